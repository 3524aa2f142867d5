"""The split ledger saved with the tokenized dataset: the next build pins every row's split."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from transformers import AutoTokenizer

from ft_pipeline.lib.data.tokenized import LEDGER_FILE, MANIFEST_FILE, tokenize_partitions
from ft_pipeline.lib.state.paths import StatePaths
from ft_pipeline.recipe import parse_recipe
from ft_pipeline_tests.conftest import LABELS, as_clean, fixture_rows


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def recipe(**split):
    return parse_recipe(
        {
            "name": "r",
            "task": "classification",
            "labels": LABELS,
            "prompt": {"template": "Tweet: {text}\nSentiment:"},
            "model": {"base": "unused", "max_length": 48},
            "split": {"seed": 7, **split},
        }
    )


def part(key: str, n_per_label: int, seed: int) -> pd.DataFrame:
    rows = pd.DataFrame(fixture_rows(n_per_label, seed=seed))
    rows["text"] = rows["text"] + f" ({key})"
    return as_clean(rows, key)


def build(paths: StatePaths, r, frames: dict[str, pd.DataFrame], tokenizer):
    versions = {k: f"v-{k}-{len(f)}" for k, f in frames.items()}
    return tokenize_partitions(paths, r, frames, versions, {}, tokenizer)


def splits_by_key(result) -> dict[str, str]:
    return {
        key: name
        for name in result.dataset
        for key in result.dataset[name].to_pandas()["dedup_key"]
    }


def test_growing_data_keeps_every_row_in_its_split_and_a_new_seed_starts_over(tmp_path, tokenizer):
    paths, r = StatePaths(tmp_path / "home"), recipe()
    small = {"a": part("a", 2, 1)}  # 6 rows: small data moves rows to fill each split
    first, manifest = build(paths, r, small, tokenizer)
    target = paths.tokenized("r")
    saved = pd.read_parquet(target / LEDGER_FILE)
    assert sorted(saved["dedup_key"]) == sorted(splits_by_key(first))
    assert manifest["split_config"] == {"validation": 0.1, "test": 0.1, "seed": 7, "stratify": True}
    assert manifest["pinned_rows"] == 0

    grown = {**small, "b": part("b", 40, 2)}
    second, manifest2 = build(paths, r, grown, tokenizer)
    before, after = splits_by_key(first), splits_by_key(second)
    assert {k: after[k] for k in before} == before
    assert manifest2["pinned_rows"] == len(before)
    assert manifest2["data_version"] != manifest["data_version"]

    # The same partitions again: same splits, same data version (the ledger is stable).
    third, manifest3 = build(paths, r, grown, tokenizer)
    assert splits_by_key(third) == after
    assert manifest3["data_version"] == manifest2["data_version"]

    # Other split settings: the old ledger does not apply, rows are split afresh.
    _, manifest4 = build(paths, recipe(seed=8), grown, tokenizer)
    assert manifest4["pinned_rows"] == 0
    assert json.loads((target / MANIFEST_FILE).read_text())["split_config"]["seed"] == 8
