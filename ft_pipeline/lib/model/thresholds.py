"""Per-label decision thresholds of a multilabel model, tuned on the validation split.

A sigmoid head gives each label its own probability; a label is predicted when its
probability reaches the label's threshold. 0.5 is rarely the best cut for a rare label, so
each label gets the threshold on `GRID` that maximises its F1 on the validation rows (ties:
the one nearest 0.5); a label with no positive validation row keeps `DEFAULT` (nothing to
tune on). Training writes them beside the adapter (`THRESHOLDS_FILE`); evaluation and
serving read them from there, so every consumer cuts the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

THRESHOLDS_FILE = "thresholds.json"
DEFAULT = 0.5
GRID = tuple(round(t, 2) for t in np.arange(0.05, 0.96, 0.05))


def tune_thresholds(
    probs: np.ndarray, truth: np.ndarray, grid: Sequence[float] = GRID
) -> list[float]:
    """Each label's F1-maximising threshold (rows x labels probabilities and 0/1 truth)."""
    probs, truth = np.asarray(probs, dtype=np.float64), np.asarray(truth).astype(bool)
    if probs.shape != truth.shape:
        raise ValueError(f"probabilities {probs.shape} and truth {truth.shape} differ in shape")
    out = []
    for j in range(probs.shape[1]):
        if not truth[:, j].any():
            out.append(DEFAULT)
            continue
        best, best_f1 = DEFAULT, -1.0
        for t in sorted(grid, key=lambda t: (abs(t - DEFAULT), t)):
            pred = probs[:, j] >= t
            tp = int((pred & truth[:, j]).sum())
            f1 = 2 * tp / (int(pred.sum()) + int(truth[:, j].sum()))
            if f1 > best_f1:
                best, best_f1 = float(t), f1
        out.append(best)
    return out


def predict_sets(
    probs: np.ndarray, thresholds: Sequence[float], labels: Sequence[str]
) -> list[list[str]]:
    """The labels at or over their threshold, per row, in label order."""
    hits = np.asarray(probs) >= np.asarray(thresholds, dtype=np.float64)[None, :]
    return [[labels[j] for j in np.flatnonzero(row)] for row in hits]


def write_thresholds(folder: Path, labels: Sequence[str], thresholds: Sequence[float]) -> Path:
    path = Path(folder) / THRESHOLDS_FILE
    path.write_text(json.dumps({"labels": list(labels), "thresholds": list(thresholds)}))
    return path


def read_thresholds(folder: Path, labels: Sequence[str]) -> list[float]:
    """The thresholds saved with an adapter, checked against the recipe's labels."""
    path = Path(folder) / THRESHOLDS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: a multilabel adapter keeps its tuned thresholds here; train it again "
            "(materialize fine_tuned_adapter)"
        )
    saved: dict[str, Any] = json.loads(path.read_text())
    if saved.get("labels") != list(labels) or len(saved.get("thresholds", [])) != len(labels):
        raise ValueError(
            f"{path}: thresholds for labels {saved.get('labels')}, but the recipe's labels "
            f"are {list(labels)}; train the adapter again"
        )
    return [float(t) for t in saved["thresholds"]]
