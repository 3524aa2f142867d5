"""Join clean partitions, deduplicate across them, and split train/validation/test.

The split is a seeded hash of each row's dedup key (stable as data is added), with every
label represented in every split (classification). Because duplicates and near
duplicates are removed across partitions before splitting, a text cannot land in two splits;
`leaking_keys` verifies that independently for the blocking check.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from ft_pipeline.lib.data.dedup import find_duplicates
from ft_pipeline.lib.data.readers import ROW_COLUMN

SPLITS = ("train", "validation", "test")


@dataclass
class JoinResult:
    """Rows kept after cross-partition dedup, and the dropped ones with their reason."""

    rows: pd.DataFrame
    dropped: pd.DataFrame


def join_partitions(
    frames: dict[str, pd.DataFrame],
    near_threshold: float | None,
    signatures: dict[str, np.ndarray] | None = None,
) -> JoinResult:
    """Concatenate partitions in key order; later copies of a text are dropped, with reason.

    `signatures`, if given, holds each partition's MinHash signatures (dedup.signatures).
    """
    keys = [k for k in sorted(frames) if len(frames[k])]
    if not keys:
        raise ValueError("no clean rows in any partition: nothing to tokenize")
    joined = pd.concat([frames[k] for k in keys], ignore_index=True)
    sigs = np.concatenate([signatures[k] for k in keys]) if signatures else None
    dups = find_duplicates(joined["dedup_key"].tolist(), near_threshold, sigs)
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


def split_points(keys: pd.Series, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per key, from a seeded hash of the key alone."""
    salt = str(seed).encode()
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(k.encode(), digest_size=8, salt=salt).digest()) / 2**64
            for k in keys
        ]
    )


def assign_splits(
    rows: pd.DataFrame,
    validation: float,
    test: float,
    seed: int,
    stratify: str | None,
    pinned: pd.Series | None = None,
) -> tuple[pd.Series, bool]:
    """A split name per row; returns (splits, whether every label is in every split).

    A row's split comes from a seeded hash of its dedup key, so adding data never moves a
    row that was already split: a model trained earlier never saw today's test rows, and
    successive models share their old test rows. Labels are represented in proportion in
    expectation; when a label is too rare to land in a split by chance (small data), its
    new rows closest to that split's range are moved in, so every label is in every split.

    `pinned` (dedup key -> split, from earlier builds with the same fractions and seed; see
    `split_ledger`) keeps every key it holds where it was. That is what makes the guarantee
    hold at every data size: a row moved into a split on small data stays there as the data
    grows, though by its hash alone it would fall back into train.
    """
    point = pd.Series(split_points(rows["dedup_key"], seed), index=rows.index)
    split = pd.Series("train", index=rows.index, dtype=object)
    split[point < test + validation] = "validation"
    split[point < test] = "test"
    fixed = pd.Series(False, index=rows.index)
    if pinned is not None and len(pinned):
        known = rows["dedup_key"].map(pinned)
        fixed = known.notna()
        split[fixed] = known[fixed]
    if not stratify:
        _ensure_nonempty(split, point, fixed, validation, test)
        return split, False
    labels = rows[stratify]
    # Every label in every split needs enough rows per label and per split.
    n_classes, smallest = labels.nunique(), int(labels.value_counts().min())
    n_test = math.floor(len(rows) * test)
    n_val = math.floor((len(rows) - n_test) * validation / (1 - test))
    stratified = bool(smallest >= 3 and min(n_test, n_val) >= n_classes)
    if stratified:
        for _, group in split.groupby(labels):
            _ensure_nonempty(split, point, fixed, validation, test, group.index)
    else:
        _ensure_nonempty(split, point, fixed, validation, test)
    return split, stratified


def _ensure_nonempty(split, point, fixed, validation, test, among=None) -> None:
    """Move the new (unpinned) row nearest to an empty split's range into it (small data)."""
    among = split.index if among is None else among
    centre = {"test": test / 2, "validation": test + validation / 2, "train": 1.0}
    for name in ("test", "validation", "train"):
        if len(among) < 3 or (split[among] == name).any():
            continue
        counts = split[among].value_counts()
        donors = [i for i in among if not fixed[i] and counts[split[i]] > 1]
        if donors:
            nearest = min(donors, key=lambda i: (abs(point[i] - centre[name]), point[i]))
            split[nearest] = name


def split_ledger(keys: pd.Series, split: pd.Series, earlier: pd.Series | None) -> pd.Series:
    """dedup key -> split of every key split so far: today's rows and the earlier ledger's
    keys that are gone today (a text that comes back returns to its old split)."""
    today = pd.Series(split.to_numpy(), index=keys.to_numpy(), dtype=object)
    if earlier is None or not len(earlier):
        return today.sort_index()
    gone = earlier[~earlier.index.isin(today.index)]
    return pd.concat([gone, today]).sort_index()


def split_digest(ledger: pd.Series, keys: pd.Series) -> str:
    """A digest of the split of each of these keys (part of the tokenized data version)."""
    pairs = sorted(zip(keys, ledger.reindex(keys.to_numpy()), strict=True))
    return hashlib.sha256(repr(pairs).encode()).hexdigest()[:16]


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
