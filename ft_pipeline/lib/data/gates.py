"""The quality gates of cleaned_data, one GX suite per property.

These judge the integrity of one delivered file (labels in set, texts, confidence range).
Distribution properties (each label's share) belong to the joined training set, checked on
tokenized_dataset: a landing file is often one-sided (a batch of complaints, all negative)
and is still good data.

Each gate returns a SuiteOutcome, or None when the property does not apply (no labels in
an instruction task, no confidence column), so the check can pass and say why.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from ft_pipeline.lib.data.expectations import SuiteOutcome, gx_expectations, run_suite
from ft_pipeline.lib.data.label_sets import label_set
from ft_pipeline.recipe import Recipe

Gate = Callable[[pd.DataFrame, Recipe], SuiteOutcome | None]


def labels_in_set(frame: pd.DataFrame, recipe: Recipe) -> SuiteOutcome | None:
    E = gx_expectations()
    if recipe.task == "multilabel":
        return _label_sets_valid(frame, recipe)
    if recipe.task != "classification":
        return None
    return run_suite(
        frame,
        "labels_in_set",
        [
            E.ExpectColumnValuesToNotBeNull(column="label"),
            E.ExpectColumnValuesToBeInSet(column="label", value_set=recipe.labels),
        ],
    )


def _decoded(value) -> list[str] | None:
    """A stored label set, or None where the cell is not one (null, not a JSON list)."""
    try:
        return label_set(value) if isinstance(value, str) else None
    except (ValueError, TypeError):
        return None


def _label_sets_valid(frame: pd.DataFrame, recipe: Recipe) -> SuiteOutcome:
    """Multilabel: every label of every row's set is in `labels`, and each row holds between
    (0 or 1, by multilabel.allow_empty) and multilabel.max_labels labels."""
    E = gx_expectations()
    sets = [_decoded(v) for v in frame["label"]]
    each = pd.DataFrame({"label": [lab for found in sets if found for lab in found]}, dtype=object)
    ml = recipe.multilabel
    counts = pd.DataFrame(
        {"n_labels": [len(found) if found is not None else None for found in sets]}
    )
    low = 0 if ml.allow_empty else 1
    labels = run_suite(
        each,
        "labels_in_set",
        [E.ExpectColumnValuesToBeInSet(column="label", value_set=recipe.labels)],
    )
    sizes = run_suite(
        counts,
        "label_cardinality",
        [
            E.ExpectColumnValuesToNotBeNull(column="n_labels"),
            E.ExpectColumnValuesToBeBetween(
                column="n_labels", min_value=low, max_value=ml.max_labels or len(recipe.labels)
            ),
        ],
    )
    summary = {**labels.summary, "results": labels.summary["results"] + sizes.summary["results"]}
    summary["success"] = labels.success and sizes.success
    return SuiteOutcome(labels.success and sizes.success, summary)


def text_not_null(frame: pd.DataFrame, recipe: Recipe) -> SuiteOutcome | None:
    E = gx_expectations()
    return run_suite(frame, "text_not_null", [E.ExpectColumnValuesToNotBeNull(column="text")])


def text_length_in_bounds(frame: pd.DataFrame, recipe: Recipe) -> SuiteOutcome | None:
    E = gx_expectations()
    c = recipe.cleaning
    return run_suite(
        frame,
        "text_length_in_bounds",
        [
            E.ExpectColumnValueLengthsToBeBetween(
                column="text", min_value=c.min_chars, max_value=c.max_chars
            )
        ],
    )


def texts_unique(frame: pd.DataFrame, recipe: Recipe) -> SuiteOutcome | None:
    E = gx_expectations()
    return run_suite(frame, "texts_unique", [E.ExpectColumnValuesToBeUnique(column="dedup_key")])


def confidence_in_range(frame: pd.DataFrame, recipe: Recipe) -> SuiteOutcome | None:
    E = gx_expectations()
    if frame["confidence"].notna().sum() == 0:
        return None
    return run_suite(
        frame,
        "confidence_in_range",
        [E.ExpectColumnValuesToBeBetween(column="confidence", min_value=0.0, max_value=1.0)],
    )


CLEAN_GATES: dict[str, tuple[Gate, str]] = {
    "labels_in_set": (
        labels_in_set,
        "Every label is one of the recipe's labels (multilabel: every label of each row's set, "
        "and each set's size within bounds).",
    ),
    "text_not_null": (text_not_null, "No row has an empty text."),
    "text_length_in_bounds": (text_length_in_bounds, "Texts are within cleaning.min/max_chars."),
    "texts_unique": (texts_unique, "No two rows share a normalised text."),
    "confidence_in_range": (confidence_in_range, "Annotator confidence lies in [0, 1]."),
}
