"""Clean one raw partition into kept rows and quarantined rows.

Nothing is lost: every input row ends up in exactly one of the two tables, the quarantined
ones with a machine-readable `reason_code` and a human-readable `reason`.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ft_pipeline.lib.data.dedup import find_duplicates, signatures
from ft_pipeline.lib.data.label_sets import LabelSetRejected, label_set_text, parse_label_set
from ft_pipeline.lib.data.readers import ROW_COLUMN
from ft_pipeline.lib.data.text import dedup_key, normalize_text
from ft_pipeline.recipe import ColumnMapping, Recipe

CLEAN_COLUMNS = [
    "source",
    ROW_COLUMN,
    "text",
    "label",
    "response",
    "messages",
    "confidence",
    "text_original",
    "dedup_key",
]
QUARANTINE_COLUMNS = [*CLEAN_COLUMNS, "reason_code", "reason", "duplicate_of"]
CHAT_ROLES = ("system", "user", "assistant")


class RowRejected(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass
class CleanResult:
    """Kept rows, quarantined rows and counters for the materialization metadata."""

    kept: pd.DataFrame
    quarantined: pd.DataFrame
    stats: dict[str, int] = field(default_factory=dict)
    # MinHash signatures of the kept rows' dedup keys, one row each (None without near-dup
    # detection): the tokenized join reuses them instead of hashing every row again.
    signatures: np.ndarray | None = None

    @property
    def rows_in(self) -> int:
        return self.stats["rows_in"]

    def reasons(self) -> dict[str, int]:
        return dict(Counter(self.quarantined["reason_code"]).most_common())


INPUT_FIELD = {
    "classification": "text",
    "multilabel": "text",
    "instruction": "prompt",
    "chat": "messages",
}


def _field(row: dict[str, Any], mapping: ColumnMapping, name: str) -> Any:
    column = getattr(mapping, name)
    value = row.get(column) if column else None
    # Parquet round trips turn missing strings into NaN: treat them as missing, not "nan".
    return None if isinstance(value, float) and math.isnan(value) else value


class _RowCleaner:
    def __init__(self, recipe: Recipe) -> None:
        self.recipe = recipe
        c = recipe.cleaning
        self.text_opts = dict(
            fix_unicode=c.fix_unicode,
            mojibake=c.strip_mojibake,
            urls=c.urls,
            url_token=c.url_token,
            mentions=c.mentions,
            mention_token=c.mention_token,
        )
        self.answer_opts = dict(fix_unicode=c.fix_unicode, mojibake=c.strip_mojibake)
        case = str.casefold if c.lowercase_labels else str
        # Labels that differ only by case (when folded) or by spacing are the same label.
        self.fold = fold = lambda value: case(" ".join(value.split()))
        self.aliases = {fold(k): v for k, v in recipe.label_aliases.items()}
        self.aliases.update({fold(lab): lab for lab in recipe.labels})
        self.by_case = {" ".join(lab.split()).casefold(): lab for lab in recipe.labels}
        self.counts: Counter[str] = Counter()

    def _normalize(self, value: Any, what: str, **opts: Any) -> str:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise RowRejected(f"empty_{what}", f"{what} is empty")
        result = normalize_text(str(value), **opts)
        self.counts["unicode_fixed"] += result.unicode_fixed
        self.counts["mojibake_stripped"] += result.mojibake_stripped
        if not result.text:
            raise RowRejected(f"empty_{what}", f"{what} is empty after cleaning")
        return result.text

    def _length(self, text: str) -> None:
        c = self.recipe.cleaning
        if len(text) < c.min_chars:
            raise RowRejected("too_short", f"text has {len(text)} chars, minimum {c.min_chars}")
        if len(text) > c.max_chars:
            raise RowRejected("too_long", f"text has {len(text)} chars, maximum {c.max_chars}")

    def _label(self, value: Any) -> str:
        if value is None or not str(value).strip():
            raise RowRejected("missing_label", "label is empty")
        raw = str(value).strip()
        label = self.aliases.get(self.fold(raw))
        if label is None:
            allowed = ", ".join(self.recipe.labels)
            shown = raw if len(raw) <= 80 else f"{raw[:80]}..."
            reason = f"unknown label {shown!r}; allowed: {allowed}"
            near = self.by_case.get(" ".join(raw.split()).casefold())
            if near is not None:
                reason += f" (differs from {near!r} by case; cleaning.lowercase_labels is off)"
            raise RowRejected("unknown_label", reason)
        return label

    def _label_set(self, row: dict[str, Any], mapping: ColumnMapping) -> str:
        """A multilabel row's labels, stored as a JSON list (`label_sets`)."""
        try:
            found = parse_label_set(
                row, mapping, self.recipe, lambda raw: self.aliases.get(self.fold(raw))
            )
        except LabelSetRejected as exc:
            raise RowRejected(exc.code, exc.reason) from None
        return label_set_text(found)

    def _confidence(self, value: Any) -> float | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            conf = float(value)
        except (TypeError, ValueError):
            raise RowRejected(
                "invalid_confidence", f"confidence {value!r} is not a number"
            ) from None
        if math.isnan(conf) or not 0.0 <= conf <= 1.0:
            raise RowRejected("invalid_confidence", f"confidence {value!r} is outside [0, 1]")
        floor = self.recipe.cleaning.min_confidence
        if floor is not None and conf < floor:
            raise RowRejected("low_confidence", f"confidence {conf} below minimum {floor}")
        return conf

    def _messages(self, value: Any) -> tuple[str, str, str]:
        try:
            messages = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError as exc:
            raise RowRejected("invalid_messages", f"messages is not JSON: {exc.msg}") from None
        if not isinstance(messages, list) or not messages:
            raise RowRejected("invalid_messages", "messages must be a non-empty list")
        cleaned = []
        for n, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in CHAT_ROLES:
                raise RowRejected(
                    "invalid_messages", f"message {n}: needs role in {CHAT_ROLES} and content"
                )
            content = self._normalize(m.get("content"), "content", **self.answer_opts)
            cleaned.append({"role": m["role"], "content": content})
        if cleaned[-1]["role"] != "assistant":
            raise RowRejected("invalid_messages", "the last message must be the assistant's answer")
        if not any(m["role"] == "user" for m in cleaned):
            raise RowRejected("invalid_messages", "no user message")
        flat = "\n".join(f"{m['role']}: {m['content']}" for m in cleaned[:-1])
        return flat, cleaned[-1]["content"], json.dumps(cleaned, ensure_ascii=False)

    def clean(self, row: dict[str, Any], mapping: ColumnMapping) -> dict[str, Any]:
        task = self.recipe.task
        out: dict[str, Any] = {"label": None, "response": None, "messages": None}
        out["confidence"] = self._confidence(_field(row, mapping, "confidence"))
        if task in ("classification", "multilabel"):
            out["text_original"] = _field(row, mapping, "text")
            out["text"] = self._normalize(out["text_original"], "text", **self.text_opts)
            if task == "classification":
                out["label"] = self._label(_field(row, mapping, "label"))
            else:
                out["label"] = self._label_set(row, mapping)
            key = dedup_key(out["text"])
        elif task == "instruction":
            out["text_original"] = _field(row, mapping, "prompt")
            out["text"] = self._normalize(out["text_original"], "prompt", **self.text_opts)
            out["response"] = self._normalize(
                _field(row, mapping, "response"), "response", **self.answer_opts
            )
            key = dedup_key(out["text"]) + "\x1f" + dedup_key(out["response"])
        else:
            out["text_original"] = _field(row, mapping, "messages")
            out["text"], out["response"], out["messages"] = self._messages(out["text_original"])
            key = dedup_key(out["text"]) + "\x1f" + dedup_key(out["response"])
        self._length(out["text"])
        out["dedup_key"] = key
        return out


def clean_frame(
    raw: pd.DataFrame, recipe: Recipe, mapping: ColumnMapping, source: str
) -> CleanResult:
    """Normalise, validate and deduplicate one partition's rows."""
    cleaner = _RowCleaner(recipe)
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for row in raw.to_dict(orient="records"):
        base = {"source": source, ROW_COLUMN: int(row[ROW_COLUMN])}
        try:
            kept.append({**base, **cleaner.clean(row, mapping)})
        except RowRejected as exc:
            original = _field(row, mapping, INPUT_FIELD[recipe.task])
            rejected.append(
                {**base, "text_original": original, "reason_code": exc.code, "reason": exc.reason}
            )

    keys = [r["dedup_key"] for r in kept]
    threshold = recipe.cleaning.near_duplicate_threshold
    sigs = signatures(keys) if threshold is not None and threshold < 1.0 else None
    duplicates = find_duplicates(keys, threshold, sigs)
    drop = set()
    for dup in duplicates:
        row, first = kept[dup.index], kept[dup.of]
        where = f"row {first[ROW_COLUMN]}"
        if dup.kind == "exact":
            reason = f"duplicate of {where}"
        else:
            reason = f"near duplicate of {where} (similarity {dup.similarity:.2f})"
        if row["label"] is not None and row["label"] != first["label"]:
            reason += f"; label conflict: {row['label']} vs {first['label']}"
        code = "duplicate" if dup.kind == "exact" else "near_duplicate"
        rejected.append(
            {**row, "reason_code": code, "reason": reason, "duplicate_of": first[ROW_COLUMN]}
        )
        drop.add(dup.index)
    kept_at = [i for i in range(len(kept)) if i not in drop]
    kept = [kept[i] for i in kept_at]

    kept_df = pd.DataFrame(kept, columns=CLEAN_COLUMNS)
    kept_df["confidence"] = kept_df["confidence"].astype("float64")
    quarantine_df = pd.DataFrame(rejected, columns=QUARANTINE_COLUMNS)
    quarantine_df = quarantine_df.sort_values(ROW_COLUMN, kind="stable").reset_index(drop=True)
    quarantine_df["confidence"] = quarantine_df["confidence"].astype("float64")
    quarantine_df["duplicate_of"] = quarantine_df["duplicate_of"].astype("Int64")
    stats = {
        "rows_in": len(raw),
        "rows_kept": len(kept_df),
        "rows_quarantined": len(quarantine_df),
        **{k: int(v) for k, v in cleaner.counts.items()},
    }
    if stats["rows_in"] != stats["rows_kept"] + stats["rows_quarantined"]:
        raise AssertionError(f"row accounting broken for {source}: {stats}")
    return CleanResult(kept_df, quarantine_df, stats, None if sigs is None else sigs[kept_at])
