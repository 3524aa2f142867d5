"""Unit tests for ft_pipeline.lib.data.splits: cross-partition dedup, seeded stratified splits."""

import math

import pandas as pd
import pytest

from ft_pipeline.lib.data.readers import ROW_COLUMN
from ft_pipeline.lib.data.splits import (
    SPLITS,
    assign_splits,
    join_partitions,
    leaking_keys,
    split_digest,
    split_ledger,
)
from ft_pipeline.lib.data.text import dedup_key

LONG = (
    "the train was late again this morning and i missed the first half of the meeting, "
    "so i spent the afternoon catching up on notes and apologising to everyone involved"
)


def partition(source, texts, labels=None):
    labels = labels or ["a"] * len(texts)
    return pd.DataFrame(
        {
            "source": source,
            ROW_COLUMN: range(1, len(texts) + 1),
            "text": texts,
            "label": labels,
            "dedup_key": [dedup_key(t) for t in texts],
        }
    )


def test_join_drops_cross_partition_exact_duplicates():
    frames = {
        "incoming:b.csv": partition("incoming:b.csv", ["only in b", "Hello  THERE", "b two"]),
        "file:a.csv": partition("file:a.csv", ["hello there", "only in a"]),
    }
    result = join_partitions(frames, None)
    # Partitions are concatenated in key order: file:a.csv before incoming:b.csv.
    assert result.rows["source"].tolist() == ["file:a.csv"] * 2 + ["incoming:b.csv"] * 2
    assert result.rows["text"].tolist() == ["hello there", "only in a", "only in b", "b two"]
    assert result.rows.index.tolist() == [0, 1, 2, 3]
    assert len(result.dropped) == 1
    dropped = result.dropped.iloc[0]
    assert (dropped["source"], dropped[ROW_COLUMN]) == ("incoming:b.csv", 2)
    assert dropped["reason_code"] == "cross_partition_exact"
    assert dropped["reason"] == "duplicate of file:a.csv row 1"


def test_join_drops_cross_partition_near_duplicates():
    frames = {
        "p1": partition("p1", ["unrelated first row", LONG]),
        "p2": partition("p2", [LONG.replace("catching", "catchinq"), "p2 own row"]),
    }
    result = join_partitions(frames, 0.8)
    assert len(result.rows) + len(result.dropped) == 4
    dropped = result.dropped.iloc[0]
    assert dropped["reason_code"] == "cross_partition_near"
    assert dropped["reason"].startswith("near duplicate (0.")
    assert dropped["reason"].endswith("of p1 row 2")
    assert (dropped["source"], dropped[ROW_COLUMN]) == ("p2", 1)
    assert join_partitions(frames, None).dropped.empty


def test_join_skips_empty_partitions():
    frames = {"a": partition("a", ["x one"]), "b": partition("b", []), "c": partition("c", ["y"])}
    result = join_partitions(frames, None)
    assert result.rows["source"].tolist() == ["a", "c"]
    assert result.dropped.empty


def test_join_without_rows_raises():
    with pytest.raises(ValueError, match="no clean rows"):
        join_partitions({"a": partition("a", [])}, None)
    with pytest.raises(ValueError, match="no clean rows"):
        join_partitions({}, None)


def balanced(n_per_label=100, labels=("negative", "neutral", "positive")):
    n = n_per_label * len(labels)
    return pd.DataFrame(
        {
            "label": [labels[i % len(labels)] for i in range(n)],
            "dedup_key": [f"text number {i}" for i in range(n)],
        }
    )


def test_assign_splits_is_deterministic_for_a_seed():
    rows = balanced()
    first, _ = assign_splits(rows, 0.1, 0.1, 42, "label")
    again, _ = assign_splits(rows, 0.1, 0.1, 42, "label")
    other, _ = assign_splits(rows, 0.1, 0.1, 7, "label")
    pd.testing.assert_series_equal(first, again)
    assert not first.equals(other)


def within(count: int, n: int, share: float) -> bool:
    """`count` of `n` rows is within four standard deviations of `share` (hash split)."""
    return abs(count - n * share) <= 4 * math.sqrt(n * share * (1 - share))


@pytest.mark.parametrize(("validation", "test"), [(0.1, 0.1), (0.2, 0.15), (0.05, 0.3)])
def test_assign_splits_respects_fractions(validation, test):
    n = 20_000
    rows = pd.DataFrame({"label": ["x"] * n, "dedup_key": [f"k{i}" for i in range(n)]})
    split, _ = assign_splits(rows, validation, test, 0, None)
    counts = split.value_counts()
    assert set(split) == set(SPLITS)
    assert within(counts["test"], n, test)
    assert within(counts["validation"], n, validation)
    assert not within(counts["test"], n, test + 0.03)
    assert counts.sum() == n


def test_assign_splits_is_stratified():
    rows = balanced(1000)
    split, stratified = assign_splits(rows, 0.1, 0.1, 42, "label")
    assert stratified is True
    table = pd.crosstab(split, rows["label"])
    assert set(table.index) == set(SPLITS)
    # Each split keeps the 1:1:1 label balance, to within the hash's sampling noise.
    for name in SPLITS:
        total = int(table.loc[name].sum())
        assert all(within(int(c), total, 1 / 3) for c in table.loc[name])
    assert within(int(table.loc["test"].sum()), 3000, 0.1)


@pytest.mark.parametrize("stratify", ["label", None])
def test_adding_rows_never_moves_a_row_to_another_split(stratify):
    """The split is a function of the row's key: old rows stay where they were."""
    old = balanced(400)
    new = pd.DataFrame({"label": ["neutral"] * 300, "dedup_key": [f"new {i}" for i in range(300)]})
    before, _ = assign_splits(old, 0.1, 0.1, 42, stratify)
    after, _ = assign_splits(pd.concat([new, old], ignore_index=True), 0.1, 0.1, 42, stratify)
    assert after.iloc[300:].tolist() == before.tolist()
    assert (after.iloc[:300] == "test").sum() > 0


@pytest.mark.parametrize("n_per_label", [10, 11, 20])
def test_small_data_still_has_every_label_in_every_split(n_per_label):
    rows = balanced(n_per_label)
    split, stratified = assign_splits(rows, 0.1, 0.1, 42, "label")
    assert stratified is True
    table = pd.crosstab(split, rows["label"])
    assert set(table.index) == set(SPLITS)
    assert (table > 0).all().all()
    assert (table.loc["train"] >= table.loc["test"]).all()


def test_assign_splits_keeps_the_frame_index():
    rows = balanced(20)
    rows.index = range(1000, 1000 + len(rows))
    split, _ = assign_splits(rows, 0.1, 0.1, 1, "label")
    assert split.index.equals(rows.index)
    assert split.notna().all()


@pytest.mark.parametrize(
    ("labels", "stratify"),
    [
        pytest.param(["a"] * 49 + ["b"], "label", id="rare-label"),
        pytest.param(["a", "b"] * 25, None, id="no-stratify"),
        pytest.param(["a", "b", "c"] * 3, "label", id="under-10-rows"),
    ],
)
def test_assign_splits_falls_back_to_unstratified(labels, stratify):
    rows = pd.DataFrame({"label": labels, "dedup_key": [f"k{i}" for i in range(len(labels))]})
    split, stratified = assign_splits(rows, 0.1, 0.1, 3, stratify)
    assert not stratified
    assert len(split) == len(labels)
    assert set(split) == set(SPLITS)


def test_assign_splits_stratified_flag_is_a_python_bool():
    rows = pd.DataFrame({"label": ["a"] * 49 + ["b"], "dedup_key": [f"k{i}" for i in range(50)]})
    _, stratified = assign_splits(rows, 0.1, 0.1, 3, "label")
    assert type(stratified) is bool


@pytest.mark.parametrize("n", [10, 20])
def test_assign_splits_small_stratified_frame_does_not_crash(n):
    rows = pd.DataFrame(
        {
            "label": [["a", "b", "c"][i % 3] for i in range(n)],
            "dedup_key": [f"k{i}" for i in range(n)],
        }
    )
    split, _ = assign_splits(rows, 0.1, 0.1, 42, "label")
    assert len(split) == n
    assert set(split) <= set(SPLITS)


def test_leaking_keys_empty_for_assigned_splits():
    rows = balanced()
    split, _ = assign_splits(rows, 0.1, 0.1, 42, "label")
    assert leaking_keys(rows, split) == []


def test_leaking_keys_detects_key_in_two_splits():
    rows = balanced()
    split, _ = assign_splits(rows, 0.1, 0.1, 42, "label")
    train_i = split[split == "train"].index[0]
    test_i = split[split == "test"].index[0]
    rows.loc[test_i, "dedup_key"] = rows.loc[train_i, "dedup_key"]
    assert leaking_keys(rows, split) == [rows.loc[train_i, "dedup_key"]]


def test_leaking_keys_ignores_repeats_within_one_split():
    rows = pd.DataFrame({"dedup_key": ["k1", "k1", "k2", "k3"]})
    split = pd.Series(["train", "train", "test", "validation"])
    assert leaking_keys(rows, split) == []
    split = pd.Series(["train", "validation", "test", "validation"])
    assert leaking_keys(rows, split) == ["k1"]


def growing(n: int) -> pd.DataFrame:
    """The first n rows of one growing dataset (three labels; row i is always the same)."""
    labels = ["negative", "neutral", "positive"]
    return pd.DataFrame(
        {
            "label": [labels[(i * 7) % 3] for i in range(n)],
            "dedup_key": [f"grown text {i}" for i in range(n)],
        }
    )


@pytest.mark.parametrize("stratify", ["label", None])
def test_a_row_never_changes_split_as_data_grows_from_5_to_5000_rows(stratify):
    """Each build pins what the earlier ones split (the ledger), even rows that small data
    moved into a split: they stay there when, by their hash alone, they would not."""
    sizes = [5, 6, 8, 11, 15, 21, 30, 45, 70, 100, 160, 250, 400, 700, 1200, 2000, 3200, 5000]
    ledger = None
    for n in sizes:
        rows = growing(n)
        split, _ = assign_splits(rows, 0.1, 0.1, 7, stratify, pinned=ledger)
        if ledger is not None:
            seen = rows["dedup_key"].isin(ledger.index)
            assert seen.sum() == len(ledger)
            now = pd.Series(split[seen].to_numpy(), index=rows.loc[seen, "dedup_key"])
            moved = now[now != ledger.reindex(now.index)]
            assert moved.empty, f"at {n} rows these rows changed split: {moved.to_dict()}"
        ledger = split_ledger(rows["dedup_key"], split, ledger)
    final = pd.Series(split.to_numpy(), index=rows["dedup_key"]).value_counts()
    assert within(final["test"], 5000, 0.1) and within(final["validation"], 5000, 0.1)
    # Without the ledger, some early rows would fall back out of the split small data
    # moved them into: the guarantee is the ledger's doing, not luck.
    alone, _ = assign_splits(rows, 0.1, 0.1, 7, stratify)
    assert (alone.to_numpy() != split.to_numpy()).sum() > 0


def test_the_ledger_keeps_keys_that_are_gone_and_the_digest_follows_the_splits():
    rows = growing(40)
    split, _ = assign_splits(rows, 0.1, 0.1, 42, "label")
    ledger = split_ledger(rows["dedup_key"], split, None)
    fewer = rows.iloc[10:]
    again = split_ledger(fewer["dedup_key"], split.iloc[10:], ledger)
    pd.testing.assert_series_equal(again, ledger)  # the 10 gone keys keep their split
    digest = split_digest(ledger, rows["dedup_key"])
    assert split_digest(again, rows["dedup_key"]) == digest
    other = ledger.copy()
    other.iloc[0] = "test" if other.iloc[0] != "test" else "train"
    assert split_digest(other, rows["dedup_key"]) != digest
