"""The per-partition cache behind tokenized_dataset: reuse, invalidation, damage, pruning."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from transformers import AutoTokenizer

from ft_pipeline.lib.data.partition_cache import PartitionCache
from ft_pipeline.lib.data.tokenized import build_tokenized
from ft_pipeline.recipe import parse_recipe
from ft_pipeline_tests.conftest import LABELS, as_clean, fixture_rows


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def recipe(head: str = "lm", template: str = "Tweet: {text}\nSentiment:"):
    return parse_recipe(
        {
            "name": "r",
            "task": "classification",
            "labels": LABELS,
            "prompt": {"template": template},
            "model": {"base": "unused", "max_length": 48, "head": head},
            "cleaning": {"near_duplicate_threshold": 0.8},
        }
    )


def partition(key: str, n_per_label: int, seed: int) -> pd.DataFrame:
    rows = pd.DataFrame(fixture_rows(n_per_label, seed=seed))
    rows["text"] = rows["text"] + f" ({key})"  # distinct texts per partition
    return as_clean(rows, key)


FRAMES = {"a": partition("a", 10, 1), "b": partition("b", 8, 2)}
VERSIONS = {"a": "va1", "b": "vb1"}


def as_frames(result) -> dict[str, pd.DataFrame]:
    return {s: result.dataset[s].to_pandas() for s in result.dataset}


def assert_same(left, right) -> None:
    a, b = as_frames(left), as_frames(right)
    for split in a:
        x, y = a[split], b[split]
        assert x.columns.tolist() == y.columns.tolist()
        pd.testing.assert_frame_equal(
            x.drop(columns=["input_ids", "labels"]), y.drop(columns=["input_ids", "labels"])
        )
        assert [list(v) for v in x["input_ids"]] == [list(v) for v in y["input_ids"]]
        assert [list(v) for v in x["labels"]] == [list(v) for v in y["labels"]]
    pd.testing.assert_frame_equal(left.dropped, right.dropped)


@pytest.mark.parametrize("head", ["lm", "classifier"])
def test_cached_build_equals_uncached_and_reuses_every_partition(tmp_path, tokenizer, head):
    r = recipe(head)
    plain = build_tokenized(FRAMES, r, tokenizer)
    cold = PartitionCache(tmp_path, r.tokenization_hash())
    first = build_tokenized(FRAMES, r, tokenizer, VERSIONS, cold)
    warm = PartitionCache(tmp_path, r.tokenization_hash())
    second = build_tokenized(FRAMES, r, tokenizer, VERSIONS, warm)
    assert (cold.hits, cold.misses) == (0, 4)
    assert (warm.hits, warm.misses) == (4, 0)
    assert_same(plain, first)
    assert_same(plain, second)


def test_a_new_partition_costs_only_its_own_rows(tmp_path, tokenizer):
    r = recipe()
    build_tokenized(FRAMES, r, tokenizer, VERSIONS, PartitionCache(tmp_path, r.tokenization_hash()))
    frames = {**FRAMES, "c": partition("c", 5, 3)}
    cache = PartitionCache(tmp_path, r.tokenization_hash())
    result = build_tokenized(frames, r, tokenizer, {**VERSIONS, "c": "vc1"}, cache)
    assert (cache.hits, cache.misses) == (4, 2)
    assert result.stats["rows_in"] == sum(len(f) for f in frames.values())


def test_new_version_or_new_template_is_a_miss(tmp_path, tokenizer):
    r = recipe()
    build_tokenized(FRAMES, r, tokenizer, VERSIONS, PartitionCache(tmp_path, r.tokenization_hash()))
    changed = PartitionCache(tmp_path, r.tokenization_hash())
    build_tokenized(FRAMES, r, tokenizer, {**VERSIONS, "b": "vb2"}, changed)
    assert (changed.hits, changed.misses) == (2, 2)
    other = recipe(template="Text: {text}\nLabel:")
    retemplated = PartitionCache(tmp_path, other.tokenization_hash())
    result = build_tokenized(FRAMES, other, tokenizer, VERSIONS, retemplated)
    # Signatures only depend on the data; the encoding depends on the template too.
    assert (retemplated.hits, retemplated.misses) == (2, 2)
    assert_same(build_tokenized(FRAMES, other, tokenizer), result)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "wrong_rows"])
def test_a_damaged_entry_is_recomputed_with_a_warning(tmp_path, tokenizer, caplog, damage):
    r = recipe()
    reference = build_tokenized(
        FRAMES, r, tokenizer, VERSIONS, PartitionCache(tmp_path, r.tokenization_hash())
    )
    sig = next((tmp_path / "signatures").glob("a-*.npy"))
    enc = next(p for p in (tmp_path / "encoded").glob("a-*.parquet") if "dropped" not in p.name)
    if damage == "truncate":
        for path in (sig, enc):
            path.write_bytes(path.read_bytes()[:50])
    elif damage == "garbage":
        for path in (sig, enc):
            path.write_bytes(b"not a cache entry at all")
    else:  # a valid file for another partition's rows: must not be trusted
        other = next((tmp_path / "signatures").glob("b-*.npy"))
        sig.write_bytes(other.read_bytes())
    cache = PartitionCache(tmp_path, r.tokenization_hash())
    with caplog.at_level(logging.WARNING, logger="ft_pipeline.lib.data.partition_cache"):
        result = build_tokenized(FRAMES, r, tokenizer, VERSIONS, cache)
    assert cache.misses >= 1
    assert_same(reference, result)
    if damage != "wrong_rows":
        assert str(sig) in caplog.text
    again = PartitionCache(tmp_path, r.tokenization_hash())
    build_tokenized(FRAMES, r, tokenizer, VERSIONS, again)
    assert (again.hits, again.misses) == (4, 0)  # the damaged entries were rewritten


def test_prune_deletes_entries_of_versions_no_longer_joined(tmp_path, tokenizer):
    r = recipe()
    build_tokenized(FRAMES, r, tokenizer, VERSIONS, PartitionCache(tmp_path, r.tokenization_hash()))
    cache = PartitionCache(tmp_path, r.tokenization_hash())
    build_tokenized({"a": FRAMES["a"]}, r, tokenizer, {"a": "va1"}, cache)
    assert cache.prune() == 3  # b's signatures, encoded rows and encoded dropped rows
    left = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert left and all(name.startswith("a-") for name in left)


def test_an_unwritable_cache_only_costs_speed(tmp_path, tokenizer, caplog):
    r = recipe()
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    cache = PartitionCache(blocked, r.tokenization_hash())
    with caplog.at_level(logging.WARNING, logger="ft_pipeline.lib.data.partition_cache"):
        result = build_tokenized(FRAMES, r, tokenizer, VERSIONS, cache)
    assert_same(build_tokenized(FRAMES, r, tokenizer), result)
    assert "could not write cache entry" in caplog.text
    assert blocked.read_text().startswith("a file")
