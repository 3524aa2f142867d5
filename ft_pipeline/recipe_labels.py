"""The recipe's label rules: which tasks have labels, which head each may use, and the
`multilabel` section (how a row's label set is written in the data).

`ft_pipeline.recipe.Recipe` calls these from its validators; `docs/recipe-reference.md` is
generated from the `Field(description=...)` of each knob (`make docs`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from ft_pipeline.recipe_data import ColumnMapping, Int, _Strict

# Tasks whose rows carry labels from `labels` (one per row, or a set per row).
LABEL_TASKS = ("classification", "multilabel")


class MultilabelConfig(_Strict):
    """task multilabel: how a row's label set is read, and which sets are valid."""

    separator: str = Field(
        ",",
        min_length=1,
        description='a label cell that is not a JSON list (`["anger", "sadness"]`, always '
        "accepted) is split on this, e.g. `anger,sadness` or, with `;`, `anger;sadness`",
    )
    allow_empty: bool = Field(
        True,
        description="a row with no label (an empty cell, `[]`, or 0 in every label column) is "
        "valid: a text with no emotion is common; false: such rows are quarantined",
    )
    max_labels: Int | None = Field(
        None,
        ge=1,
        description="rows with more labels than this are quarantined; null: no limit",
    )

    @field_validator("separator")
    @classmethod
    def _separator(cls, value: str) -> str:
        if value.strip() != value or value in ('"', "[", "]"):
            raise ValueError(
                f"separator {value!r} cannot be a space, a quote or a bracket: use , ; or |"
            )
        return value


def check_label_count(task: str | None, labels: list[str]) -> None:
    if task in LABEL_TASKS and len(labels) < 2:
        raise ValueError(f"{task} needs at least two labels")


def default_head(task: str) -> str:
    """Labelled tasks default to the classifier head: bench/quality_vs_cost.py measured it
    better and cheaper than next-token labels on the same rows (docs/heads-and-benchmarks.md);
    multilabel has no other head."""
    return "classifier" if task in LABEL_TASKS else "lm"


def check_head(head: str, task: str | None) -> None:
    if head == "classifier" and task not in LABEL_TASKS:
        raise ValueError(
            f"model.head 'classifier' needs task 'classification' or 'multilabel', got {task!r}"
        )
    if task == "multilabel" and head != "classifier":
        raise ValueError(
            f"task 'multilabel' needs model.head 'classifier' (a sigmoid per label; the "
            f"{head!r} head scores one label per text): remove model.head or set it to classifier"
        )


def _mappings(data: Any) -> list[tuple[str, ColumnMapping]]:
    found = [("data.columns", data.columns)]
    found += [(f"data.sources[{i}].columns", s.columns) for i, s in enumerate(data.sources)]
    return [(where, m) for where, m in found if m is not None]


def check_label_columns(task: str, labels: list[str], data: Any) -> None:
    """`label_columns` only for multilabel, and naming one column for every label."""
    for where, mapping in _mappings(data):
        columns = mapping.label_columns
        if columns is None:
            continue
        if task != "multilabel":
            raise ValueError(f"{where}.label_columns applies to task multilabel, not {task!r}")
        unknown = sorted(set(columns) - set(labels))
        missing = [lab for lab in labels if lab not in columns]
        if unknown or missing:
            raise ValueError(
                f"{where}.label_columns must map every label of `labels` {labels} to a column; "
                f"unknown labels: {unknown}, labels without a column: {missing}"
            )
