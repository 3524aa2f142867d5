"""Deterministic, length-grouped batch order.

Each epoch shuffles with `seed + epoch`, then sorts rows by length inside windows of
`window` batches, so a batch holds similar lengths (little padding) while the order across
the epoch stays random. The order is a pure function of (lengths, batch size, seed, epoch):
a resumed run can skip exactly the batches it has already seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, window: int = 32
) -> list[list[int]]:
    """Row indices of every batch of one epoch."""
    rng = np.random.default_rng(seed + epoch)
    order = rng.permutation(len(lengths))
    span = batch_size * window
    grouped: list[int] = []
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        grouped.extend(sorted(chunk.tolist(), key=lambda i: lengths[i]))
    batches = [grouped[i : i + batch_size] for i in range(0, len(grouped), batch_size)]
    rng.shuffle(batches)
    return batches
