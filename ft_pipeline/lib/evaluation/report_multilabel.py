"""The multilabel part of the evaluation report: micro- and macro-F1 with their intervals,
and a per-label table (precision, recall, F1 with its interval, threshold) beside the base
model and the one-vs-rest TF-IDF baseline."""

from __future__ import annotations

from typing import Any

import pandas as pd

FINE_TUNED, BASE, TFIDF = "fine-tuned", "base", "tfidf"


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def _ci(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "–"
    return f"{_num(entry.get('f1'))} ({_num(entry.get('low'))}..{_num(entry.get('high'))})"


def interval_line(result: dict[str, Any]) -> str | None:
    """The fine-tuned model's macro- and micro-F1 with their bootstrap intervals."""
    interval = result.get("interval") or {}
    if "micro" not in interval:
        return None
    level = f"{float(interval.get('confidence', 0.95)):.0%}"
    return (
        f"Fine-tuned macro-F1 {_ci(interval)}, micro-F1 {_ci(interval['micro'])} "
        f"({level} bootstrap intervals over the test rows). The gate reads macro-F1: every "
        "label counts alike, however rare."
    )


def per_label_table(result: dict[str, Any], labels: list[str], table) -> str:
    """One row per label: the fine-tuned model's P/R/F1 (F1 with its interval), its tuned
    threshold, base and TF-IDF F1, and the label's support among the test rows."""
    models = result.get("models", {})
    tuned = models.get(FINE_TUNED, {}).get("per_label", {})
    intervals = (result.get("interval") or {}).get("per_label", {})
    thresholds = result.get("thresholds") or {}
    rows = []
    for lab in labels:
        mine = tuned.get(lab, {})
        rows.append(
            {
                "label": lab,
                "precision": _num(mine.get("precision")),
                "recall": _num(mine.get("recall")),
                "F1 (CI)": _ci(intervals.get(lab)) if lab in intervals else _num(mine.get("f1")),
                "threshold": _num(thresholds.get(lab), 2) if lab in thresholds else "–",
                "base F1": _num(models.get(BASE, {}).get("per_label", {}).get(lab, {}).get("f1")),
                "TF-IDF F1": _num(
                    models.get(TFIDF, {}).get("per_label", {}).get(lab, {}).get("f1")
                ),
                "support": str(mine.get("support", "–")),
            }
        )
    return table(pd.DataFrame(rows))


def metrics_columns() -> list[tuple[str, str]]:
    """The metrics table's columns for multilabel results."""
    return [
        ("subset accuracy", "accuracy"),
        ("micro F1", "micro_f1"),
        ("macro P", "macro_precision"),
        ("macro R", "macro_recall"),
        ("macro F1", "macro_f1"),
        ("labels/row", "labels_per_row"),
    ]
