"""The recipe's data half: sources and columns, cleaning, quality gates and the split.

Also the building blocks every section shares (`Int`, `Float`, `_Strict`).
`ft_pipeline.recipe.Recipe` puts the sections together; `docs/recipe-reference.md` is
generated from the `Field(description=...)` of each knob (`make docs`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

BUNDLED_CORPORA = ("bundled:crowdflower-tweets",)


def _not_bool(value: Any) -> Any:
    # YAML `r: true` would otherwise pass as the number 1 (bool is an int in Python).
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


# Numbers as recipes write them: `1e-3` (a string to YAML 1.1) is read as 0.001, a boolean
# is an error rather than 0 or 1.
Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def same_up_to_case(what: str, pairs: list[tuple[str, str]]) -> None:
    """Reject two names (labels or alias keys) that differ only by case or spacing but mean
    different labels: a row cannot tell them apart (data labels are matched ignoring both)."""
    seen: dict[str, tuple[str, str]] = {}
    for key, target in pairs:
        other, other_target = seen.setdefault(" ".join(key.split()).casefold(), (key, target))
        if other_target != target:
            raise ValueError(
                f"{what} {other!r} and {key!r} differ only by case or spacing; "
                "rows are matched ignoring both, so they cannot be told apart"
            )


class ColumnMapping(_Strict):
    """Which column of a source file holds each canonical field (None: not present)."""

    text: str | None = Field("text", description="column of the input text (classification)")
    label: str | None = Field("label", description="column of the label (classification)")
    confidence: str | None = Field(
        None,
        description="column of the annotators' confidence in [0, 1], compared with "
        "`cleaning.min_confidence`; null: the data has none",
    )
    prompt: str | None = Field("prompt", description="column of the prompt (instruction)")
    response: str | None = Field(
        "response", description="column of the expected response (instruction)"
    )
    messages: str | None = Field(
        "messages",
        description="column of a JSON list of `{role, content}` messages ending with the "
        "assistant's answer (chat)",
    )
    label_columns: dict[str, str] | None = Field(
        None,
        description="multilabel: label -> the column holding 0 or 1 for it, one column per "
        "label (every label needs one); null: the `label` column holds each row's label list",
    )


class SourceSpec(_Strict):
    """One explicit source: a bundled corpus name or a file path (relative to the recipe)."""

    uri: str | None = Field(
        None, description="a bundled corpus, `bundled:<name>`; give this or `path`"
    )
    path: str | None = Field(
        None,
        description="a data file, relative to the recipe's folder; it must stay inside "
        "`data.source_root`; give this or `uri`",
    )
    format: Literal["auto", "csv", "jsonl", "parquet"] = Field(
        "auto", description="file format; auto: from the file's extension"
    )
    encoding: str | None = Field(
        None, description="text encoding of this file; null: `data.encoding`"
    )
    delimiter: Literal[",", ";", "\t", "|"] | None = Field(
        None,
        description='field delimiter of this CSV file (a tab is written `"\\t"`); null: tab '
        "for `.tsv` files, comma otherwise",
    )
    columns: ColumnMapping | None = Field(
        None, description="column mapping of this file; null: `data.columns`"
    )

    @model_validator(mode="after")
    def _one_of(self) -> SourceSpec:
        if (self.uri is None) == (self.path is None):
            raise ValueError("give exactly one of 'uri' (bundled:<name>) or 'path'")
        if self.uri is not None and self.uri not in BUNDLED_CORPORA:
            raise ValueError(
                f"unknown bundled corpus {self.uri!r}; allowed: {list(BUNDLED_CORPORA)}"
            )
        return self


def _coerce_source(value: Any) -> Any:
    if isinstance(value, str):
        return {"uri": value} if value.startswith("bundled:") else {"path": value}
    return value


class DataConfig(_Strict):
    """Where rows come from and how their columns map onto the task's fields."""

    sources: list[Annotated[SourceSpec, Field()]] = Field(
        default_factory=list,
        description="explicit sources, one partition each: `bundled:<name>`, a path, or a "
        "mapping with `uri` or `path` and optional `format`, `encoding`, `columns`",
    )
    incoming_dir: str | None = Field(
        None,
        description="landing folder the sensor watches, relative to the recipe's folder; "
        "null: `<state>/incoming`",
    )
    source_root: str = Field(
        ".", description="folder that source paths must stay in (relative to the recipe's folder)"
    )
    columns: ColumnMapping = Field(
        ColumnMapping(),
        description="column mapping of landing files and of sources without their own",
    )
    encoding: str = Field(
        "utf-8", description="text encoding of files without their own `encoding`"
    )
    max_file_mb: Float = Field(
        100, gt=0, description="larger source files are refused before reading (MB = 2**20 bytes)"
    )

    @field_validator("sources", mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        return [_coerce_source(v) for v in value] if isinstance(value, list) else value


class CleaningConfig(_Strict):
    """Row-level normalisation and filtering; every dropped row is quarantined with a reason."""

    fix_unicode: bool = Field(True, description="repair broken Unicode and mojibake with ftfy")
    strip_mojibake: bool = Field(
        True,
        description="remove (and count) runs of mojibake that ftfy cannot repair, such as "
        "bytes already replaced by `_`",
    )
    urls: Literal["keep", "replace", "remove"] = Field(
        "replace", description="URLs in texts: keep, replace by `url_token`, or remove"
    )
    url_token: str = Field("<url>", description="what a URL becomes when `urls` is replace")
    mentions: Literal["keep", "replace", "remove"] = Field(
        "replace", description="@mentions in texts: keep, replace by `mention_token`, or remove"
    )
    mention_token: str = Field(
        "@user", description="what a mention becomes when `mentions` is replace"
    )
    lowercase_labels: bool = Field(
        True, description="match data labels to `labels` and `label_aliases` ignoring case"
    )
    min_confidence: Float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="rows whose confidence is below this are quarantined; null: no floor",
    )
    min_chars: Int = Field(1, ge=1, description="shorter cleaned texts are quarantined")
    max_chars: Int = Field(1000, ge=1, description="longer cleaned texts are quarantined")
    near_duplicate_threshold: Float | None = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="MinHash similarity from which a text is a near duplicate of an earlier "
        "one and quarantined; null or 1: exact duplicates only",
    )

    @model_validator(mode="after")
    def _bounds(self) -> CleaningConfig:
        if self.min_chars > self.max_chars:
            raise ValueError(
                f"cleaning.min_chars ({self.min_chars}) is larger than "
                f"cleaning.max_chars ({self.max_chars})"
            )
        return self


class QualityConfig(_Strict):
    """Thresholds of the blocking quality gates."""

    min_label_share: Float = Field(
        0.05,
        ge=0.0,
        lt=1.0,
        description="gate: each label must make up at least this share of the joined "
        "training split (classification; 0: off); one source file may hold any mix",
    )
    max_truncation_rate: Float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="gate: largest share of rows whose input was shortened to fit "
        "`model.max_length`",
    )


class SplitConfig(_Strict):
    """Train/validation/test split by a seeded hash of each text: stable as data is added."""

    validation: Float = Field(
        0.1, gt=0.0, lt=0.5, description="share of the rows in the validation split"
    )
    test: Float = Field(0.1, gt=0.0, lt=0.5, description="share of the rows in the test split")
    seed: Int = Field(
        42, description="seed of the hash that puts each text in a split; a new seed reshuffles"
    )

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitConfig:
        if self.validation + self.test >= 0.9:
            raise ValueError(
                "split.validation + split.test must stay below 0.9 to leave rows to train on, "
                f"got {self.validation} + {self.test}"
            )
        return self
