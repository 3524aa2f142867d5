"""Exact and near-duplicate detection.

Exact duplicates share a normalised key (case and spacing folded). Near duplicates are
found with MinHash LSH over character 5-gram shingles (datasketch), then confirmed with
the true Jaccard similarity of the shingle sets, so the cost grows with the number of rows,
not its square. The first occurrence of a text is kept; later ones point at it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH

SHINGLE = 5
NUM_PERM = 128
# LSH only proposes candidates; each is confirmed with the exact Jaccard similarity. So
# the LSH threshold sits well below the real one and favours recall over precision:
# a pair just above the threshold is then found almost surely (see test_lib_dedup).
LSH_MARGIN = 0.25
LSH_WEIGHTS = (0.1, 0.9)


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


def find_duplicates(keys: Sequence[str], near_threshold: float | None) -> list[Duplicate]:
    """All rows that repeat an earlier row, exactly or (if a threshold is set) nearly."""
    first_seen: dict[str, int] = {}
    found: list[Duplicate] = []
    survivors: list[int] = []
    for i, key in enumerate(keys):
        if key in first_seen:
            found.append(Duplicate(i, first_seen[key], "exact", 1.0))
        else:
            first_seen[key] = i
            survivors.append(i)
    if near_threshold is None or near_threshold >= 1.0 or len(survivors) < 2:
        return found

    sets = {i: shingles(keys[i]) for i in survivors}
    hashes = MinHash.bulk(
        [[s.encode() for s in sets[i]] for i in survivors], num_perm=NUM_PERM, seed=1
    )
    lsh_threshold = max(0.2, near_threshold - LSH_MARGIN)
    lsh = MinHashLSH(threshold=lsh_threshold, num_perm=NUM_PERM, weights=LSH_WEIGHTS)
    for i, mh in zip(survivors, hashes, strict=True):
        best: tuple[float, int] | None = None
        for j in lsh.query(mh):
            sim = jaccard(sets[i], sets[j])
            if sim >= near_threshold and (best is None or (sim, -j) > (best[0], -best[1])):
                best = (sim, j)
        if best is None:
            lsh.insert(i, mh)
        else:
            found.append(Duplicate(i, best[1], "near", round(best[0], 4)))
    return sorted(found, key=lambda d: d.index)
