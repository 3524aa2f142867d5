"""The evaluation report: one Markdown page comparing base, fine-tuned and baseline models.

The verdict line comes first so a reader (or a reviewer of the MLflow run) sees whether
the adapter is worth deploying before any table; the tables then back it up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ft_pipeline.lib.evaluation import report_multilabel as RM

MISSING = "–"
FINE_TUNED, BASE = "fine-tuned", "base"
DISPLAY = {"tfidf": "TF-IDF baseline"}
SLICE_NOTE = (
    "Macro-F1 averages over all labels: a label with no rows in a slice scores 0 there and "
    "caps that slice's macro-F1, so compare models within a row rather than across slices."
)


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return MISSING
    try:
        value = float(value)
    except (TypeError, ValueError):
        return MISSING
    return f"{value:.{digits}f}" if math.isfinite(value) else MISSING


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _name(model: str) -> str:
    return DISPLAY.get(model, model)


def _is_classification(result: dict[str, Any]) -> bool:
    if result.get("task") in ("instruction", "chat"):
        return False
    if result.get("task") == "classification":
        return True
    return any("macro_f1" in m for m in result.get("models", {}).values())


def _verdict(result: dict[str, Any], classification: bool) -> str:
    models: dict[str, dict[str, Any]] = result.get("models", {})
    key, what = ("macro_f1", "macro-F1") if classification else ("token_f1", "token F1")
    parts: list[str] = []
    ft, base = models.get(FINE_TUNED), models.get(BASE)
    if ft is not None:
        line = f"{FINE_TUNED} {what} {_num(ft.get(key), 2)}"
        if base is not None:
            line += f" vs {BASE} {_num(base.get(key), 2)}"
            gain = result.get("gain")
            if gain:
                level = f"{float(gain.get('confidence', 0.95)):.0%}"
                line += (
                    f" ({gain['gain']:+.2f}, {level} CI {gain['low']:+.2f}..{gain['high']:+.2f})"
                )
            elif base.get(key) is not None and ft.get(key) is not None:
                line += f" ({float(ft[key]) - float(base[key]):+.2f})"
        if not classification and ft.get("exact_match") is not None:
            line += f"; exact match {_num(ft['exact_match'], 2)}"
            if base is not None and base.get("exact_match") is not None:
                line += f" vs {_num(base['exact_match'], 2)}"
        parts.append(line)
    for name, metrics in models.items():
        if name in (FINE_TUNED, BASE) and ft is not None:
            continue
        parts.append(f"{_name(name)} {_num(metrics.get(key), 2)}")
    text = "; ".join(parts) if parts else "no models were evaluated"
    gate = result.get("gate")
    if gate is not None:
        text += f". Gate: **{'passed' if gate.get('passed') else 'failed'}**."
    return text


def _baseline_line(result: dict[str, Any]) -> str | None:
    """A plain sentence on the fine-tuned model against TF-IDF on the same rows."""
    gain = result.get("baseline_gain")
    if not gain:
        return None
    level = f"{float(gain.get('confidence', 0.95)):.0%}"
    ci = f"paired {level} CI {gain['low']:+.3f}..{gain['high']:+.3f}"
    diff = f"fine-tuned minus TF-IDF {gain['gain']:+.3f} macro-F1, {ci}"
    if gain["high"] < 0:
        return f"**The TF-IDF baseline beats the fine-tuned model on these rows** ({diff})."
    if gain["gain"] < 0:
        return f"**The TF-IDF baseline scores higher than the fine-tuned model** ({diff})."
    if gain["low"] <= 0:
        return f"The fine-tuned model is within noise of the TF-IDF baseline ({diff})."
    return f"The fine-tuned model beats the TF-IDF baseline ({diff})."


def _champion_line(result: dict[str, Any], classification: bool) -> str | None:
    """The challenger against the current champion, both scored on these rows."""
    version = result.get("champion_version")
    if version is None:
        return None
    gain = result.get("champion_gain")
    if not gain:
        why = result.get("champion_rescore_error", "no answers")
        return (
            f"Champion version {version} could not be re-scored on these rows ({why}); "
            "the gate compared it by its registered metric."
        )
    what = "macro-F1" if classification else "token F1"
    level = f"{float(gain.get('confidence', 0.95)):.0%}"
    return (
        f"Against champion version {version}, re-scored on the same rows: fine-tuned minus "
        f"champion {gain['gain']:+.3f} {what}, paired {level} CI "
        f"{gain['low']:+.3f}..{gain['high']:+.3f}."
    )


def _samples_table(samples: list[dict[str, str]]) -> str:
    rows = [
        {
            "prompt": _cell(s["prompt"]),
            "reference": _cell(s["reference"]),
            "base": _cell(s["base"]),
            "fine-tuned": _cell(s["fine_tuned"]),
        }
        for s in samples
    ]
    return markdown_table(pd.DataFrame(rows, columns=["prompt", "reference", "base", "fine-tuned"]))


def _metrics_table(
    models: dict[str, dict[str, Any]], classification: bool, multilabel: bool = False
) -> str:
    if multilabel:
        columns = RM.metrics_columns()
    elif classification:
        columns = [
            ("accuracy", "accuracy"),
            ("macro P", "macro_precision"),
            ("macro R", "macro_recall"),
            ("macro F1", "macro_f1"),
        ]
    else:
        columns = [("exact match", "exact_match"), ("token F1", "token_f1")]
    columns += [("val loss", "val_loss"), ("perplexity", "perplexity")]
    rows = [
        {"model": _cell(_name(name)), **{head: _num(m.get(key)) for head, key in columns}}
        for name, m in models.items()
    ]
    return markdown_table(pd.DataFrame(rows, columns=["model"] + [h for h, _ in columns]))


def _confusion_table(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> str:
    frame = pd.DataFrame(
        [[_cell(t), *[int(c) for c in row]] for t, row in zip(labels, matrix, strict=True)],
        columns=["true \\ predicted", *[_cell(lab) for lab in labels]],
    )
    return markdown_table(frame)


def _per_label_table(models: dict[str, dict[str, Any]], labels: Sequence[str]) -> str:
    rows = []
    for lab in labels:
        row: dict[str, str] = {"label": _cell(lab)}
        support = None
        for name, m in models.items():
            entry = m.get("per_label", {}).get(lab, {})
            row[_cell(_name(name))] = _num(entry.get("f1"))
            support = entry.get("support", support)
        row["support"] = MISSING if support is None else str(int(support))
        rows.append(row)
    return markdown_table(pd.DataFrame(rows))


def _slice_table(slices: dict[str, dict[str, dict[str, Any]]]) -> str:
    keys = sorted({key for per_model in slices.values() for key in per_model})
    rows = []
    for key in keys:
        row: dict[str, str] = {"slice": _cell(key)}
        n = None
        for name, per_model in slices.items():
            metrics = per_model.get(key)
            row[_cell(_name(name))] = _num(metrics.get("macro_f1")) if metrics else MISSING
            if metrics and n is None:
                n = metrics.get("n")
        row["n"] = MISSING if n is None else str(int(n))
        rows.append(row)
    return markdown_table(pd.DataFrame(rows))


def render_report(result: dict[str, Any]) -> str:
    """Markdown evaluation report from the evaluation asset's result dict.

    Classification results get a verdict with the paired-bootstrap CI of the macro-F1 gain,
    a metrics table, per-label F1, one confusion matrix per model, per-slice macro-F1, the
    gate outcome and plot links. Instruction/chat results (models carrying exact_match,
    token_f1, val_loss, perplexity) get the verdict, metrics table, gate and plots; any
    section whose data is absent is left out rather than rendered empty.
    """
    models: dict[str, dict[str, Any]] = result.get("models", {})
    labels = list(result.get("labels") or [])
    classification = _is_classification(result)
    multilabel = result.get("task") == "multilabel"
    out = [f"# Evaluation: {result.get('recipe', 'unnamed recipe')}", ""]
    facts = [
        ("Task", result.get("task")),
        ("Head", result.get("head")),
        ("Base model scored as", result.get("base_kind")),
        ("Labels", ", ".join(labels) if labels else None),
        ("Data version", result.get("data_version")),
        ("Adapter", result.get("adapter_key")),
        ("Test rows", result.get("test_rows")),
    ]
    out += [" · ".join(f"**{k}:** {v}" for k, v in facts if v is not None), ""]
    if result.get("samples"):
        out += ["## Sample answers", "", _samples_table(result["samples"]), ""]
    out += ["## Verdict", "", _verdict(result, classification), ""]
    lines = (
        _baseline_line(result),
        RM.interval_line(result),
        _champion_line(result, classification),
    )
    for line in lines:
        if line is not None:
            out += [line, ""]
    if models:
        out += ["## Metrics", "", _metrics_table(models, classification, multilabel), ""]
    if multilabel and labels:
        table = RM.per_label_table(result, labels, markdown_table)
        out += ["## Per label (fine-tuned, beside base and TF-IDF)", "", table, ""]
    elif classification and labels:
        if any("per_label" in m for m in models.values()):
            out += ["## Per-label F1", "", _per_label_table(models, labels), ""]
        matrices = {n: m["confusion_matrix"] for n, m in models.items() if "confusion_matrix" in m}
        if matrices:
            out += ["## Confusion matrices", "", "Rows are true labels, columns predicted.", ""]
            for name, matrix in matrices.items():
                out += [f"### {_name(name)}", "", _confusion_table(matrix, labels), ""]
    slices = result.get("slices") or {}
    if classification and any(slices.values()):
        out += ["## Macro-F1 by slice", "", _slice_table(slices), "", SLICE_NOTE, ""]
    gate = result.get("gate")
    if gate is not None:
        out += ["## Gate", "", f"**{'Passed' if gate.get('passed') else 'Failed'}**", ""]
        out += [f"- {reason}" for reason in gate.get("reasons", [])]
        out += [""] if gate.get("reasons") else []
    plots = result.get("plots") or {}
    if plots:
        out += ["## Plots", ""]
        out += [f"![{name}]({filename})" for name, filename in plots.items()]
        out += [""]
    return "\n".join(out)


def markdown_table(frame: pd.DataFrame, index: bool = False) -> str:
    """A Markdown table, or `_none_` for an empty frame."""
    # disable_numparse: keep numbers exactly as formatted ("0.610", not "0.61").
    return frame.to_markdown(index=index, disable_numparse=True) if len(frame) else "_none_"
