"""Multi-label rows: read a row's label set from the data, and store it one way everywhere.

A row's labels come from one of two places (docs/recipes.md, "Multi-label: emotions"):

- the `label` column: a JSON list (`["anger", "sadness"]`, or a list in JSONL/Parquet), or a
  string split on `multilabel.separator` (`anger,sadness`); an empty cell or `[]` is the
  empty set;
- `data.columns.label_columns`: one column per label holding 0 or 1 (also true/false, yes/no).

Each label goes through `label_aliases` and the case rules like a classification label. The
set is stored as a JSON list in recipe label order (`label_set_text`): cleaned partitions,
dedup and the split ledger keep a string column, and two rows with the same set hold the same
string. The tokenized dataset adds `label_ids`, its multi-hot vector (`multi_hot`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ft_pipeline.lib.data.readers import ROW_COLUMN
from ft_pipeline.recipe import ColumnMapping, Recipe

NO_LABEL = "<none>"  # the stratum of a row without labels
TRUE_VALUES = {"1", "1.0", "true", "yes", "y"}
FALSE_VALUES = {"0", "0.0", "false", "no", "n"}


class LabelSetRejected(ValueError):
    """A row whose label set cannot be used; `code` is the quarantine reason code."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:80]}..."


def raw_labels(value: Any, separator: str, column: str) -> list[str]:
    """The label strings of one `label` cell (JSON list, list, or separated string)."""
    if _missing(value):
        return []
    if isinstance(value, list | tuple | np.ndarray):
        items = list(value)
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError as exc:
                raise LabelSetRejected(
                    "invalid_label_list",
                    f"column {column!r} holds {_shown(text)}, which starts like a JSON list but "
                    f'is not one ({exc.msg}); write it as ["a", "b"] or as a{separator}b',
                ) from None
            if not isinstance(items, list):
                raise LabelSetRejected("invalid_label_list", f"column {column!r}: not a list")
        else:
            items = text.split(separator)
    out = []
    for item in items:
        if not isinstance(item, str):
            raise LabelSetRejected(
                "invalid_label_list",
                f"column {column!r} holds {_shown(item)} in its list; labels are strings",
            )
        if item.strip():
            out.append(item.strip())
    return out


def flag(value: Any, label: str, column: str, where: str = "this row") -> bool:
    """A 0/1 label column's value for one row (missing: an error, not a 0)."""
    text = "" if _missing(value) else str(value).strip().casefold()
    if not text:
        raise LabelSetRejected(
            "missing_label", f"{where}: column {column!r} (label {label!r}) is empty; write 0 or 1"
        )
    if text in TRUE_VALUES:
        return True
    if text in FALSE_VALUES:
        return False
    raise LabelSetRejected(
        "invalid_label_value",
        f"{where}: column {column!r} (label {label!r}) holds {_shown(value)}; expected 0 or 1",
    )


def parse_label_set(
    row: dict[str, Any],
    mapping: ColumnMapping,
    recipe: Recipe,
    canonical: Callable[[str], str | None],
) -> list[str]:
    """A row's labels in recipe order; `canonical` maps a data label to a recipe label (or
    None: unknown). Raises LabelSetRejected naming the row, the column and the label."""
    where = f"row {row.get(ROW_COLUMN, '?')}"
    if mapping.label_columns:
        found = [
            lab for lab, col in mapping.label_columns.items() if flag(row.get(col), lab, col, where)
        ]
    else:
        column = mapping.label or "label"
        found = []
        for raw in raw_labels(row.get(column), recipe.multilabel.separator, column):
            label = canonical(raw)
            if label is None:
                raise LabelSetRejected(
                    "unknown_label",
                    f"{where}: unknown label {_shown(raw)} in column {column!r}; allowed: "
                    f"{', '.join(recipe.labels)} (or map it in label_aliases)",
                )
            found.append(label)
    labels = [lab for lab in recipe.labels if lab in set(found)]
    ml = recipe.multilabel
    if not labels and not ml.allow_empty:
        raise LabelSetRejected(
            "empty_label_set", f"{where}: no label, and multilabel.allow_empty is false"
        )
    if ml.max_labels is not None and len(labels) > ml.max_labels:
        raise LabelSetRejected(
            "too_many_labels",
            f"{where}: {len(labels)} labels {labels}, multilabel.max_labels is {ml.max_labels}",
        )
    return labels


def label_set_text(labels: Sequence[str]) -> str:
    """The stored form of a label set: a JSON list in recipe order."""
    return json.dumps(list(labels), ensure_ascii=False)


def label_set(text: Any) -> list[str]:
    """A stored label set back as a list (a list stays one)."""
    if isinstance(text, list | tuple | np.ndarray):
        return [str(v) for v in text]
    found = json.loads(text) if text else []
    if not isinstance(found, list):
        raise ValueError(f"not a stored label set (a JSON list): {_shown(text)}")
    return [str(v) for v in found]


def multi_hot(sets: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """(rows, labels) 0/1 matrix; a label outside `labels` is left out."""
    index = {lab: i for i, lab in enumerate(labels)}
    out = np.zeros((len(sets), len(labels)), dtype=np.int64)
    for row, found in enumerate(sets):
        for lab in found:
            if lab in index:
                out[row, index[lab]] = 1
    return out


def rarest_label(sets: Sequence[Sequence[str]]) -> list[str]:
    """Each row's stratum for the split: its label rarest over all rows (`NO_LABEL` for an
    empty set), so a rare label's rows are spread over the splits like a class's rows."""
    counts = Counter(lab for found in sets for lab in found)
    return [min(found, key=lambda lab: (counts[lab], lab)) if found else NO_LABEL for found in sets]
