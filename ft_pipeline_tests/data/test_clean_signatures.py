"""Cleaning saves its MinHash signatures with the clean partition; the tokenized join uses
them instead of hashing every row again, and never those of another data version."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer

from ft_pipeline.lib.data import partition_cache
from ft_pipeline.lib.data import partition_store as store
from ft_pipeline.lib.data.cleaning import clean_frame
from ft_pipeline.lib.data.dedup import signatures
from ft_pipeline.lib.data.partition_cache import PartitionCache
from ft_pipeline.lib.data.readers import ROW_COLUMN
from ft_pipeline.lib.data.tokenized import build_tokenized
from ft_pipeline.lib.state.paths import StatePaths
from ft_pipeline.recipe import parse_recipe
from ft_pipeline_tests.conftest import LABELS, fixture_rows

KEY = "incoming:a.csv"
RECIPE = parse_recipe(
    {
        "name": "r",
        "labels": LABELS,
        "model": {"base": "unused", "max_length": 48, "head": "classifier"},
        "cleaning": {"near_duplicate_threshold": 0.8},
    }
)


def raw(n_per_label: int = 12, seed: int = 1) -> pd.DataFrame:
    rows = fixture_rows(n_per_label, seed=seed)
    rows += [dict(rows[0]), {**rows[1], "text": rows[1]["text"] + "!"}]  # exact, near
    frame = pd.DataFrame(rows).astype(object)
    frame.insert(0, ROW_COLUMN, range(1, len(frame) + 1))
    return frame


def cleaned(home, version: str, frame: pd.DataFrame | None = None):
    result = clean_frame(raw() if frame is None else frame, RECIPE, RECIPE.data.columns, KEY)
    paths = StatePaths(home)
    stats = {"data_version": version, **result.stats}
    store.write_clean(paths, KEY, result.kept, result.quarantined, stats, result.signatures)
    return paths, result


def test_cleaning_saves_one_signature_row_per_kept_row(tmp_path):
    paths, result = cleaned(tmp_path, "v1")
    assert result.stats["rows_quarantined"] == 2  # the duplicates are not in the clean rows
    saved = store.read_signatures(paths, KEY, "v1", len(result.kept))
    assert saved is not None
    np.testing.assert_array_equal(saved, signatures(result.kept["dedup_key"].tolist()))


def test_signatures_of_another_version_or_row_count_are_never_used(tmp_path):
    paths, result = cleaned(tmp_path, "v1")
    n = len(result.kept)
    assert store.read_signatures(paths, KEY, "v2", n) is None
    assert store.read_signatures(paths, KEY, "v1", n + 1) is None
    shorter = raw().head(20)
    _, again = cleaned(tmp_path, "v2", shorter)
    assert store.read_signatures(paths, KEY, "v1", n) is None  # the old version's file is gone
    assert store.read_signatures(paths, KEY, "v2", len(again.kept)) is not None
    assert len(list(paths.clean(KEY).parent.glob("*.signatures-*.npy"))) == 1


def test_the_join_reuses_cleanings_signatures_and_builds_the_same_dataset(
    tmp_path, tiny_model_dir, monkeypatch
):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    paths, _result = cleaned(tmp_path, "v1")
    frames, versions = {KEY: pd.read_parquet(paths.clean(KEY))}, {KEY: "v1"}
    reference = build_tokenized(frames, RECIPE, tokenizer)

    def no_hashing(keys):
        raise AssertionError(f"signatures computed again for {len(keys)} rows")

    monkeypatch.setattr(partition_cache, "signatures", no_hashing)
    cache = PartitionCache(
        tmp_path / "cache",
        RECIPE.tokenization_hash(),
        saved=lambda key, version, rows: store.read_signatures(paths, key, version, rows),
    )
    reused = build_tokenized(frames, RECIPE, tokenizer, versions, cache)
    assert cache.hits == 1  # the signatures; the encoding was a miss
    for split in reference.dataset:
        pd.testing.assert_frame_equal(
            reference.dataset[split].to_pandas(), reused.dataset[split].to_pandas()
        )


def test_a_partition_without_saved_signatures_is_hashed_as_before(tmp_path, tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    paths, _result = cleaned(tmp_path, "v1")
    frames = {KEY: pd.read_parquet(paths.clean(KEY))}
    cache = PartitionCache(tmp_path / "cache", RECIPE.tokenization_hash(), saved=lambda *a: None)
    build_tokenized(frames, RECIPE, tokenizer, {KEY: "v1"}, cache)
    assert (cache.hits, cache.misses) == (0, 2)


def test_a_signature_count_that_does_not_match_the_rows_is_refused(tmp_path):
    result = clean_frame(raw(), RECIPE, RECIPE.data.columns, KEY)
    with pytest.raises(ValueError, match="signatures for"):
        store.write_clean(
            StatePaths(tmp_path),
            KEY,
            result.kept,
            result.quarantined,
            {"data_version": "v1"},
            result.signatures[:-1],
        )
