"""PNG plots for the evaluation report (confusion matrices, training loss curves) and for an
experiment (each variant's metric against its training CPU-minutes).

Headless (Agg backend) so they render in a Dagster run worker with no display; every
figure is closed after saving so long-running processes do not accumulate them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

DPI = 110


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _message_figure(text: str) -> Any:
    fig, ax = plt.subplots(figsize=(5, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, color="0.35")
    return fig


def plot_confusion_matrices(
    matrices: dict[str, list[list[int]]], labels: Sequence[str], path: str | Path
) -> Path:
    """One confusion-matrix panel per model, side by side, saved as a PNG.

    Colour is row-normalised (share of each true label) so a small class is as readable as
    a big one; the cells are annotated with raw counts. Rows are true, columns predicted.
    """
    if not matrices:
        return _save(_message_figure("no confusion matrices"), path)
    labels = list(labels)
    k = len(labels)
    side = max(3.2, 0.55 * k + 2.0)
    fig, axes = plt.subplots(
        1,
        len(matrices),
        figsize=(side * len(matrices) + 1, side),
        squeeze=False,
        layout="constrained",
    )
    image = None
    for col, (ax, (name, matrix)) in enumerate(zip(axes[0], matrices.items(), strict=True)):
        counts = np.asarray(matrix, dtype=np.float64).reshape(k, k)
        totals = counts.sum(axis=1, keepdims=True)
        shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j])}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if shares[i, j] > 0.5 else "black",
                )
        ax.set_title(name)
        ax.set_xticks(range(k), labels, rotation=45, ha="right")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted")
        if col == 0:
            ax.set_ylabel("true")
        else:
            ax.tick_params(labelleft=False)  # rows are the same labels in every panel
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="share of true label")
    return _save(fig, path)


def _points(history: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in history:
        value, step = row.get(key), row.get("step")
        if value is None or step is None:
            continue
        value = float(value)
        if math.isfinite(value):
            xs.append(float(step))
            ys.append(value)
    return xs, ys


def plot_loss_curves(history: list[dict[str, Any]], path: str | Path) -> Path:
    """Train loss (line) and validation loss (markers) against optimizer step, as a PNG.

    Rows may carry only some of the values (train loss is logged more often than
    validation loss); missing or non-finite values are skipped. With no values at all the
    PNG says so, so the report never links a missing file.
    """
    train = _points(history, "train_loss")
    val = _points(history, "val_loss")
    if not train[0] and not val[0]:
        return _save(_message_figure("no training history"), path)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if train[0]:
        ax.plot(*train, color="tab:blue", linewidth=1.4, label="train loss")
    if val[0]:
        ax.plot(*val, color="tab:orange", marker="o", linewidth=1.4, label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def plot_variants(comparison: dict[str, Any], path: Path) -> Path:
    """The gate metric with its CI against training CPU-minutes; references as lines."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for v in comparison["variants"]:
        err = [[v["score"] - v["low"]], [v["high"] - v["score"]]]
        marker = "*" if v["name"] == comparison["winner"] else "o"
        ax.errorbar([v["cpu_minutes"]], [v["score"]], yerr=err, fmt=marker, capsize=4, ms=9)
        ax.annotate(
            v["name"],
            (v["cpu_minutes"], v["score"]),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    for (name, value), style in zip(comparison["references"].items(), ("--", ":"), strict=False):
        if value is not None:
            ax.axhline(value, linestyle=style, color="grey", label=f"{name} {value:.3f}")
    ax.set_xlabel("training CPU-minutes")
    ax.set_ylabel(comparison["metric"])
    ax.set_title(f"{comparison['recipe']}: variants on the same test rows")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)
