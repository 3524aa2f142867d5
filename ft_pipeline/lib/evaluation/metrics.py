"""Evaluation metrics: classification scores, paired bootstrap intervals, text overlap.

Point metrics come from scikit-learn so they match what anyone would compute by hand. The
bootstrap needs thousands of macro-F1 values, so it works from confusion counts with numpy
(one `bincount` per batch of resamples) instead of calling scikit-learn in a loop; both
paths follow the same convention: a prediction outside `labels` is a miss for the true
label, and a label with no support still counts in the macro average (F1 = 0).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support


def _check_lengths(*columns: Sequence[Any]) -> int:
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        raise ValueError(f"columns differ in length: {[len(c) for c in columns]}")
    return lengths.pop()


def _confusion(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts (true, predicted) over `labels`; rows with either side outside are left out.

    Same as sklearn's `confusion_matrix(labels=...)`, which however refuses a slice whose
    true labels are all outside `labels`.
    """
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    out = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        if t in index and p in index:
            out[index[t], index[p]] += 1
    return out


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro P/R/F1, per-label scores and the confusion matrix over `labels`.

    Macro averages run over every label in `labels` (zero_division=0), so a model that
    never predicts a class is penalised rather than having that class silently dropped.
    Confusion rows are true labels and columns predicted labels, both in `labels` order.
    """
    n = _check_lengths(y_true, y_pred)
    labels = list(labels)
    if n == 0:
        raise ValueError("classification_metrics needs at least one row")
    y_true, y_pred = list(y_true), list(y_pred)
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(np.mean(p)),
        "macro_recall": float(np.mean(r)),
        "macro_f1": float(np.mean(f)),
        "per_label": {
            lab: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": _confusion(y_true, y_pred, labels).tolist(),
        "n": n,
    }


def slice_metrics(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    slices: Sequence[str],
    labels: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """`classification_metrics` per slice value (e.g. per source partition), keys sorted.

    Shows whether a gain is broad or carried by one source; each entry has its own `n` so a
    reader can discount small slices.
    """
    _check_lengths(y_true, y_pred, slices)
    # Plain lists: a pandas Series with a non-range index would index by label below.
    y_true, y_pred = list(y_true), list(y_pred)
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(slices):
        groups.setdefault(str(key), []).append(i)
    return {
        key: classification_metrics(
            [y_true[i] for i in groups[key]], [y_pred[i] for i in groups[key]], labels
        )
        for key in sorted(groups)
    }


# --- bootstrap ---------------------------------------------------------------------------


def _encode(values: Sequence[str], index: dict[str, int]) -> np.ndarray:
    """Label indices; anything outside `labels` becomes the extra index len(labels)."""
    other = len(index)
    return np.fromiter((index.get(v, other) for v in values), dtype=np.int64, count=len(values))


def _macro_f1_batch(pair_codes: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 for each row of `pair_codes` (shape (batch, n), codes true*(k+1)+pred)."""
    width = (k + 1) ** 2
    batch = pair_codes.shape[0]
    offsets = (np.arange(batch, dtype=np.int64) * width)[:, None]
    counts = np.bincount((pair_codes + offsets).ravel(), minlength=batch * width)
    cm = counts.reshape(batch, k + 1, k + 1)
    tp = np.diagonal(cm, axis1=1, axis2=2)[:, :k]
    fn = cm.sum(axis=2)[:, :k] - tp  # true label, predicted anything else (incl. outside)
    fp = cm.sum(axis=1)[:, :k] - tp  # predicted label, true anything else (incl. outside)
    denom = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denom, out=np.zeros(tp.shape, dtype=np.float64), where=denom > 0)
    return f1.mean(axis=1)


def _resampled_f1(
    y_true: Sequence[str],
    preds: Sequence[Sequence[str]],
    labels: Sequence[str],
    samples: int,
    seed: int,
) -> tuple[list[float], list[np.ndarray]]:
    """Observed macro-F1 and `samples` bootstrap macro-F1 values for each prediction column.

    Every column is scored on the same resampled row indices, which is what makes a
    difference between two columns a paired bootstrap.
    """
    n = _check_lengths(y_true, *preds)
    if n == 0:
        raise ValueError("bootstrap needs at least one row")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    k = len(labels)
    index = {lab: i for i, lab in enumerate(labels)}
    t = _encode(y_true, index)
    codes = [t * (k + 1) + _encode(p, index) for p in preds]
    observed = [float(_macro_f1_batch(c[None, :], k)[0]) for c in codes]
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // n)  # bound memory: about 2M resampled rows per batch
    parts: list[list[np.ndarray]] = [[] for _ in codes]
    for start in range(0, samples, chunk):
        rows = rng.integers(0, n, size=(min(chunk, samples - start), n))
        for j, c in enumerate(codes):
            parts[j].append(_macro_f1_batch(c[rows], k))
    return observed, [np.concatenate(p) for p in parts]


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_f1_gain(
    y_true: Sequence[str],
    pred_a: Sequence[str],
    pred_b: Sequence[str],
    labels: Sequence[str],
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float | int]:
    """Macro-F1 of b minus a, with a paired-bootstrap percentile interval.

    Rows are resampled with replacement and both models are scored on the same resample,
    so the interval reflects the test set's sampling noise on the *difference*, which is
    much tighter than comparing two separate intervals. `low > 0` means b is better at
    this confidence.
    """
    (f_a, f_b), (boot_a, boot_b) = _resampled_f1(y_true, [pred_a, pred_b], labels, samples, seed)
    low, high = _interval(boot_b - boot_a, confidence)
    return {
        "gain": f_b - f_a,
        "low": low,
        "high": high,
        "samples": samples,
        "confidence": confidence,
    }


def bootstrap_f1_interval(
    y_true: Sequence[str],
    y_pred: Sequence[str],
    labels: Sequence[str],
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float | int]:
    """Macro-F1 of one model with a bootstrap percentile interval over test rows."""
    (f1,), (boot,) = _resampled_f1(y_true, [y_pred], labels, samples, seed)
    low, high = _interval(boot, confidence)
    return {"f1": f1, "low": low, "high": high, "samples": samples, "confidence": confidence}


# --- text overlap (instruction / chat) ----------------------------------------------------

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    text = _ARTICLES.sub(" ", str(text).lower().translate(_PUNCT))
    return " ".join(text.split())


def _token_f1(pred: str, ref: str) -> float:
    p, r = normalize_answer(pred).split(), normalize_answer(ref).split()
    if not p or not r:
        return float(p == r)  # both empty: a match; one empty: a miss
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def exact_match(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Share of rows whose normalised prediction equals the normalised reference (0 if none)."""
    n = _check_lengths(preds, refs)
    if n == 0:
        return 0.0
    return (
        sum(normalize_answer(p) == normalize_answer(r) for p, r in zip(preds, refs, strict=True))
        / n
    )


def token_f1(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Mean SQuAD token-overlap F1 between predictions and references (0 if no rows)."""
    n = _check_lengths(preds, refs)
    if n == 0:
        return 0.0
    return sum(_token_f1(p, r) for p, r in zip(preds, refs, strict=True)) / n


def token_f1_rows(preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    """Token-overlap F1 of each prediction against its reference."""
    _check_lengths(preds, refs)
    return [_token_f1(p, r) for p, r in zip(preds, refs, strict=True)]


def bootstrap_mean_gain(
    scores_a: Sequence[float],
    scores_b: Sequence[float],
    samples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float | int]:
    """Mean per-row score of b minus a (token F1, say), with a paired-bootstrap interval:
    rows are resampled and both models keep their score on each, as `bootstrap_f1_gain`."""
    n = _check_lengths(scores_a, scores_b)
    diff = np.asarray(scores_b, dtype=float) - np.asarray(scores_a, dtype=float)
    if n == 0:
        return {"gain": 0.0, "low": 0.0, "high": 0.0, "samples": samples, "confidence": confidence}
    picks = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    low, high = _interval(diff[picks].mean(axis=1), confidence)
    return {
        "gain": float(diff.mean()),
        "low": low,
        "high": high,
        "samples": samples,
        "confidence": confidence,
    }
