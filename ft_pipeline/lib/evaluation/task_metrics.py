"""The labelled tasks' metrics behind one interface: classification (one label per row) and
multilabel (a set per row) share the evaluation, the gate, the champion comparison and the
experiment comparison; only what a reference and a prediction are differs.

Classification references and predictions are label strings; multilabel ones are lists of
labels (a row's stored JSON set decoded, `label_sets.label_set`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ft_pipeline.lib.data.label_sets import label_set
from ft_pipeline.lib.evaluation import metrics as M
from ft_pipeline.lib.evaluation import multilabel_metrics as ML
from ft_pipeline.recipe import Recipe
from ft_pipeline.recipe_labels import LABEL_TASKS


def is_labelled(recipe: Recipe) -> bool:
    return recipe.task in LABEL_TASKS


def references(rows: Any, recipe: Recipe) -> list:
    """The test rows' references: labels, or label lists (multilabel)."""
    if recipe.task == "multilabel":
        return [label_set(v) for v in rows["label"]]
    return list(rows["label"])


def label_metrics(recipe: Recipe, refs: Sequence, preds: Sequence) -> dict[str, Any]:
    if recipe.task == "multilabel":
        return ML.multilabel_metrics(refs, preds, recipe.labels)
    return M.classification_metrics(refs, preds, recipe.labels)


def f1_gain(recipe: Recipe, refs: Sequence, pred_a: Sequence, pred_b: Sequence, **opts) -> dict:
    """Macro-F1 of b minus a with its paired-bootstrap interval."""
    if recipe.task == "multilabel":
        return ML.bootstrap_multilabel_gain(refs, pred_a, pred_b, recipe.labels, **opts)
    return M.bootstrap_f1_gain(refs, pred_a, pred_b, recipe.labels, **opts)


def f1_interval(recipe: Recipe, refs: Sequence, preds: Sequence, **opts) -> dict[str, Any]:
    """One model's macro-F1 with its bootstrap interval (`f1`, `low`, `high`); multilabel
    adds the micro-F1 and per-label intervals."""
    if recipe.task == "multilabel":
        return ML.bootstrap_multilabel_intervals(refs, preds, recipe.labels, **opts)
    return M.bootstrap_f1_interval(refs, preds, recipe.labels, **opts)


def slice_scores(recipe: Recipe, refs: Sequence, preds: Sequence, slices: Sequence[str]) -> dict:
    """`label_metrics` per slice value (e.g. per source partition), keys sorted."""
    if recipe.task != "multilabel":
        return M.slice_metrics(refs, preds, slices, recipe.labels)
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(slices):
        groups.setdefault(str(key), []).append(i)
    return {
        key: ML.multilabel_metrics([refs[i] for i in rows], [preds[i] for i in rows], recipe.labels)
        for key, rows in sorted(groups.items())
    }
