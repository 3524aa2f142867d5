"""Join clean partitions, deduplicate across them, and split train/validation/test.

The split is seeded and stratified by label (classification). Because duplicates and near
duplicates are removed across partitions before splitting, a text cannot land in two splits;
`leaking_keys` verifies that independently for the blocking check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from sklearn.model_selection import train_test_split

from ft_pipeline.lib.dedup import find_duplicates
from ft_pipeline.lib.readers import ROW_COLUMN

SPLITS = ("train", "validation", "test")


@dataclass
class JoinResult:
    """Rows kept after cross-partition dedup, and the dropped ones with their reason."""

    rows: pd.DataFrame
    dropped: pd.DataFrame


def join_partitions(frames: dict[str, pd.DataFrame], near_threshold: float | None) -> JoinResult:
    """Concatenate partitions in key order; later copies of a text are dropped, with reason."""
    parts = [frames[k] for k in sorted(frames) if len(frames[k])]
    if not parts:
        raise ValueError("no clean rows in any partition: nothing to tokenize")
    joined = pd.concat(parts, ignore_index=True)
    dups = find_duplicates(joined["dedup_key"].tolist(), near_threshold)
    reasons = []
    for d in dups:
        first = joined.iloc[d.of]
        same = "duplicate" if d.kind == "exact" else f"near duplicate ({d.similarity:.2f})"
        reasons.append(
            {
                "index": d.index,
                "reason_code": f"cross_partition_{d.kind}",
                "reason": f"{same} of {first['source']} row {first[ROW_COLUMN]}",
            }
        )
    drop_idx = [r["index"] for r in reasons]
    dropped = joined.loc[drop_idx].copy()
    dropped["reason_code"] = [r["reason_code"] for r in reasons]
    dropped["reason"] = [r["reason"] for r in reasons]
    rows = joined.drop(index=drop_idx).reset_index(drop=True)
    return JoinResult(rows, dropped.reset_index(drop=True))


def assign_splits(
    rows: pd.DataFrame, validation: float, test: float, seed: int, stratify: str | None
) -> tuple[pd.Series, bool]:
    """A split name per row; returns (splits, whether stratification was possible)."""
    index = rows.index.to_numpy()
    labels = rows[stratify] if stratify else None
    stratified = False
    if labels is not None:
        # sklearn needs every class in every split: enough rows per class and per split.
        n_classes, smallest = labels.nunique(), int(labels.value_counts().min())
        n_test = math.floor(len(rows) * test)
        n_val = math.floor((len(rows) - n_test) * validation / (1 - test))
        stratified = bool(smallest >= 3 and min(n_test, n_val) >= n_classes)
    strat = labels if stratified else None
    rest, test_idx = train_test_split(index, test_size=test, random_state=seed, stratify=strat)
    strat_rest = labels.loc[rest] if stratified else None
    _, val_idx = train_test_split(
        rest, test_size=validation / (1 - test), random_state=seed, stratify=strat_rest
    )
    split = pd.Series("train", index=rows.index, dtype=object)
    split.loc[val_idx] = "validation"
    split.loc[test_idx] = "test"
    return split, stratified


def leaking_keys(rows: pd.DataFrame, split: pd.Series) -> list[str]:
    """Dedup keys that occur in more than one split (must be empty)."""
    per_key = pd.DataFrame({"key": rows["dedup_key"], "split": split}).groupby("key")["split"]
    counts = per_key.nunique()
    return counts[counts > 1].index.tolist()


def sample_indices(n_rows: int, limit: int | None, seed: int, labels=None) -> list[int]:
    """A seeded (stratified when labels are given) sample of at most `limit` row indices.

    Training and the TF-IDF baseline draw the same sample, so the comparison is fair.
    """
    if limit is None or limit >= n_rows:
        return list(range(n_rows))
    index = list(range(n_rows))
    strat = None
    if labels is not None:
        counts = pd.Series(labels).value_counts()
        if counts.min() >= 2 and limit >= len(counts):
            strat = list(labels)
    picked, _ = train_test_split(index, train_size=limit, random_state=seed, stratify=strat)
    return sorted(picked)
