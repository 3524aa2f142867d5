"""Exact and near-duplicate detection.

Exact duplicates share a normalised key (case and spacing folded). Near duplicates are
found with MinHash signatures over character 5-gram shingles (datasketch) and LSH banding
(the band layout datasketch's `MinHashLSH` picks for the threshold), then confirmed with the
true Jaccard similarity of the shingle sets, so the cost grows with the number of rows, not
its square. The first occurrence of a text is kept; later ones point at it.

Signatures depend on one key only, so callers may compute them once per partition and pass
them back in (`signatures`); the banding itself is vectorised with numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from datasketch import MinHash, MinHashLSH

from ft_pipeline.lib.state.gcpause import paused_gc

SHINGLE = 5
NUM_PERM = 128
SEED = 1
# LSH only proposes candidates; each is confirmed with the exact Jaccard similarity. So
# the LSH threshold sits well below the real one and favours recall over precision: a pair
# just above the threshold is then found almost surely (ft_pipeline_tests/data/test_dedup.py).
LSH_MARGIN = 0.25
LSH_WEIGHTS = (0.1, 0.9)
_MIX = np.random.default_rng(SEED).integers(1, 2**63, size=NUM_PERM, dtype=np.uint64) | 1


@dataclass(frozen=True)
class Duplicate:
    """Row `index` repeats row `of` (positions in the input sequence)."""

    index: int
    of: int
    kind: str  # "exact" or "near"
    similarity: float


def shingles(key: str, size: int = SHINGLE) -> set[str]:
    if len(key) <= size:
        return {key}
    return {key[i : i + size] for i in range(len(key) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def signatures(keys: Sequence[str]) -> np.ndarray:
    """MinHash signatures of the keys' shingle sets, shape (len(keys), NUM_PERM), uint32."""
    if not keys:
        return np.zeros((0, NUM_PERM), dtype=np.uint32)
    hashes = MinHash.bulk(
        [[s.encode() for s in shingles(k)] for k in keys], num_perm=NUM_PERM, seed=SEED
    )
    return np.stack([h.hashvalues for h in hashes]).astype(np.uint32)


def band_codes(sigs: np.ndarray, lsh_threshold: float) -> np.ndarray:
    """One 64-bit code per row and LSH band, shape (rows, bands). Rows sharing a code in
    any band are candidates; a code collision only adds a candidate to confirm."""
    lsh = MinHashLSH(threshold=lsh_threshold, num_perm=NUM_PERM, weights=LSH_WEIGHTS)
    mixed = sigs[:, : lsh.b * lsh.r].astype(np.uint64) * _MIX[: lsh.b * lsh.r]
    return mixed.reshape(len(sigs), lsh.b, lsh.r).sum(axis=2, dtype=np.uint64)


def find_duplicates(
    keys: Sequence[str], near_threshold: float | None, sigs: np.ndarray | None = None
) -> list[Duplicate]:
    """All rows that repeat an earlier row, exactly or (if a threshold is set) nearly.

    `sigs`, if given, are the rows' `signatures(keys)` (computed here otherwise).
    """
    n = len(keys)
    codes_of_key, _ = pd.factorize(pd.Series(list(keys), dtype=object))
    first = pd.Series(np.arange(n)).groupby(codes_of_key).transform("min").to_numpy()
    repeats = np.flatnonzero(first != np.arange(n))
    found = [Duplicate(int(i), int(first[i]), "exact", 1.0) for i in repeats]
    survivors = np.flatnonzero(first == np.arange(n)).tolist()
    if near_threshold is None or near_threshold >= 1.0 or len(survivors) < 2:
        return found

    own = [keys[i] for i in survivors]
    sigs = signatures(own) if sigs is None else np.asarray(sigs)[survivors]
    with paused_gc():
        found += _near_duplicates(keys, survivors, sigs, near_threshold)
    return sorted(found, key=lambda d: d.index)


def _near_duplicates(
    keys: Sequence[str], survivors: list[int], sigs: np.ndarray, near_threshold: float
) -> list[Duplicate]:
    """Near duplicates among the `survivors` (row positions) of the exact pass."""
    lsh_threshold = max(0.2, near_threshold - LSH_MARGIN)
    all_codes = band_codes(sigs, lsh_threshold)
    # A row that shares no band code with any other row is neither a duplicate nor the
    # original of one: only the others go through the loop below.
    shared = np.zeros(len(all_codes), dtype=bool)
    for band in all_codes.T:
        shared |= pd.Series(band).duplicated(keep=False).to_numpy()
    looked_at = np.flatnonzero(shared)
    codes = dict(zip(looked_at.tolist(), all_codes[looked_at].tolist(), strict=True))
    buckets: list[dict[int, list[int]]] = [{} for _ in range(all_codes.shape[1])]
    sets: dict[int, set[str]] = {}

    def shingled(row: int) -> set[str]:
        if row not in sets:
            sets[row] = shingles(keys[row])
        return sets[row]

    found = []
    for pos in looked_at.tolist():
        i = survivors[pos]
        hits = [buckets[b][code] for b, code in enumerate(codes[pos]) if code in buckets[b]]
        near: list[int] = []
        if hits:  # the signatures estimate the similarity; only plausible pairs are confirmed
            candidates = np.unique(np.concatenate(hits))
            estimate = (sigs[candidates] == sigs[pos]).mean(axis=1)
            near = candidates[estimate >= lsh_threshold].tolist()
        best: tuple[float, int] | None = None
        for q in near:
            j = survivors[q]
            sim = jaccard(shingled(i), shingled(j))
            if sim >= near_threshold and (best is None or (sim, -j) > (best[0], -best[1])):
                best = (sim, j)
        if best is None:
            for b, code in enumerate(codes[pos]):
                buckets[b].setdefault(code, []).append(pos)
        else:
            found.append(Duplicate(i, best[1], "near", round(best[0], 4)))
    return found
