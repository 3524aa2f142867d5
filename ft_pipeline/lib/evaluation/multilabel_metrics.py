"""Multilabel metrics: micro/macro F1, per-label scores, and their bootstrap intervals.

Point metrics come from scikit-learn on multi-hot matrices (`average="micro"`, `"macro"`,
`None`, zero_division=0: a label never predicted and never true scores 0 and still counts in
the macro average, as for classification). The bootstrap resamples rows (texts, with their
whole label sets) from per-row true/false positive and false negative counts, so every model
is scored on the same resamples and a difference is a paired bootstrap (`metrics`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from ft_pipeline.lib.data.label_sets import multi_hot
from ft_pipeline.lib.evaluation.metrics import _interval

LabelSets = Sequence[Sequence[str]]


def multilabel_metrics(
    y_true: LabelSets, y_pred: LabelSets, labels: Sequence[str]
) -> dict[str, Any]:
    """Subset accuracy, micro and macro P/R/F1, per-label scores, mean labels per row."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"{len(y_true)} reference rows but {len(y_pred)} predictions")
    if not len(y_true):
        raise ValueError("multilabel_metrics needs at least one row")
    t, p = multi_hot(y_true, labels), multi_hot(y_pred, labels)
    per = precision_recall_fscore_support(t, p, average=None, zero_division=0)
    micro = precision_recall_fscore_support(t, p, average="micro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(t, p)),  # the whole set right
        "micro_precision": float(micro[0]),
        "micro_recall": float(micro[1]),
        "micro_f1": float(f1_score(t, p, average="micro", zero_division=0)),
        "macro_precision": float(np.mean(per[0])),
        "macro_recall": float(np.mean(per[1])),
        "macro_f1": float(f1_score(t, p, average="macro", zero_division=0)),
        "per_label": {
            lab: {
                "precision": float(per[0][i]),
                "recall": float(per[1][i]),
                "f1": float(per[2][i]),
                "support": int(per[3][i]),
            }
            for i, lab in enumerate(labels)
        },
        "labels_per_row": float(p.sum(axis=1).mean()),
        "n": len(y_true),
    }


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros(tp.shape, dtype=np.float64), where=denom > 0)


def _resampled(
    y_true: LabelSets, preds: Sequence[LabelSets], labels: Sequence[str], samples: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """Per prediction column: per-label F1 of `samples` bootstrap resamples (`per_label`,
    samples x labels), and their macro and micro F1; all on the same resampled rows."""
    n = len(y_true)
    if n == 0 or any(len(p) != n for p in preds):
        raise ValueError(f"bootstrap needs equally long, non-empty columns, got {n} references")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    t = multi_hot(y_true, labels).astype(bool)
    rng = np.random.default_rng(seed)
    picks = [rng.integers(0, n, size=n) for _ in range(samples)]
    # Row counts of each resample (samples x rows): one matrix product per count below.
    weights = np.stack([np.bincount(rows, minlength=n) for rows in picks]).astype(np.float64)
    out = []
    for pred in preds:
        p = multi_hot(pred, labels).astype(bool)
        tp, fp, fn = weights @ (t & p), weights @ (~t & p), weights @ (t & ~p)
        out.append(
            {
                "per_label": _f1(tp, fp, fn),
                "macro": _f1(tp, fp, fn).mean(axis=1),
                "micro": _f1(tp.sum(axis=1), fp.sum(axis=1), fn.sum(axis=1)),
            }
        )
    return out


def bootstrap_multilabel_gain(
    y_true: LabelSets,
    pred_a: LabelSets,
    pred_b: LabelSets,
    labels: Sequence[str],
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float | int]:
    """Macro-F1 of b minus a, with a paired-bootstrap percentile interval (the gate)."""
    boot_a, boot_b = _resampled(y_true, [pred_a, pred_b], labels, samples, seed)
    gain = multilabel_metrics(y_true, pred_b, labels)["macro_f1"]
    gain -= multilabel_metrics(y_true, pred_a, labels)["macro_f1"]
    low, high = _interval(boot_b["macro"] - boot_a["macro"], confidence)
    return {"gain": gain, "low": low, "high": high, "samples": samples, "confidence": confidence}


def bootstrap_multilabel_intervals(
    y_true: LabelSets,
    y_pred: LabelSets,
    labels: Sequence[str],
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """One model's macro-F1 (`f1`, `low`, `high`: what the gate and experiments read), its
    micro-F1 interval (`micro`) and each label's F1 interval (`per_label`)."""
    (boot,) = _resampled(y_true, [y_pred], labels, samples, seed)
    found = multilabel_metrics(y_true, y_pred, labels)
    low, high = _interval(boot["macro"], confidence)
    m_low, m_high = _interval(boot["micro"], confidence)
    per_label = {}
    for j, lab in enumerate(labels):
        l_low, l_high = _interval(boot["per_label"][:, j], confidence)
        per_label[lab] = {"f1": found["per_label"][lab]["f1"], "low": l_low, "high": l_high}
    return {
        "f1": found["macro_f1"],
        "low": low,
        "high": high,
        "micro": {"f1": found["micro_f1"], "low": m_low, "high": m_high},
        "per_label": per_label,
        "samples": samples,
        "confidence": confidence,
    }
