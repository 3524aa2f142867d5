"""The recipe: one validated YAML file that holds every task-specific knob.

A new dataset or base model is a new recipe, not new code. Validation errors name the
field, the bad value and what is allowed, so a typo fails at load rather than an hour into
training.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

BUNDLED_CORPORA = ("bundled:crowdflower-tweets",)


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message says which field and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnMapping(_Strict):
    """Which column of a source file holds each canonical field (None: not present)."""

    text: str | None = "text"
    label: str | None = "label"
    confidence: str | None = None
    prompt: str | None = "prompt"
    response: str | None = "response"
    messages: str | None = "messages"


class SourceSpec(_Strict):
    """One explicit source: a bundled corpus name or a file path (relative to the recipe)."""

    uri: str | None = Field(None, description="bundled:<name>")
    path: str | None = None
    format: Literal["auto", "csv", "jsonl", "parquet"] = "auto"
    encoding: str | None = None
    columns: ColumnMapping | None = None

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

    sources: list[Annotated[SourceSpec, Field()]] = Field(default_factory=list)
    incoming_dir: str | None = Field(None, description="landing folder; default <state>/incoming")
    columns: ColumnMapping = ColumnMapping()
    encoding: str = "utf-8"

    @field_validator("sources", mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        return [_coerce_source(v) for v in value] if isinstance(value, list) else value


class CleaningConfig(_Strict):
    """Row-level normalisation and filtering; every dropped row is quarantined with a reason."""

    fix_unicode: bool = True
    strip_mojibake: bool = True
    urls: Literal["keep", "replace", "remove"] = "replace"
    url_token: str = "<url>"
    mentions: Literal["keep", "replace", "remove"] = "replace"
    mention_token: str = "@user"
    lowercase_labels: bool = True
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    min_chars: int = Field(1, ge=1)
    max_chars: int = Field(1000, ge=1)
    near_duplicate_threshold: float | None = Field(0.9, gt=0.0, le=1.0)

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

    min_label_share: float = Field(0.05, ge=0.0, lt=1.0)
    max_truncation_rate: float = Field(0.02, ge=0.0, le=1.0)


class SplitConfig(_Strict):
    """Seeded, stratified train/validation/test split."""

    validation: float = Field(0.1, gt=0.0, lt=0.5)
    test: float = Field(0.1, gt=0.0, lt=0.5)
    seed: int = 42

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> SplitConfig:
        if self.validation + self.test >= 0.9:
            raise ValueError(
                "split.validation + split.test must stay below 0.9 to leave rows to train on, "
                f"got {self.validation} + {self.test}"
            )
        return self


class PromptConfig(_Strict):
    """How a row becomes a chat conversation for the base model's chat template."""

    system: str | None = None
    template: str = "{text}"


class ModelConfig(_Strict):
    """The base model: bundled:<name>, a Hugging Face id, or a local folder."""

    base: str = "bundled:smollm2-135m-instruct"
    max_length: int = Field(256, ge=8, le=32768)


class LoraConfig(_Strict):
    """LoRA hyperparameters (translated to peft.LoraConfig in one place)."""

    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )


class TrainingConfig(_Strict):
    """Optimisation settings for the adapter."""

    learning_rate: float = Field(2e-4, gt=0.0, lt=1.0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    batch_size: int = Field(8, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    epochs: float = Field(1.0, gt=0.0)
    max_steps: int | None = Field(None, ge=1)
    max_train_rows: int | None = Field(None, ge=1)
    max_val_rows: int | None = Field(300, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    eval_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(50, ge=1)
    early_stopping_patience: int | None = Field(3, ge=1)
    seed: int = 42


class EvaluationConfig(_Strict):
    """The promotion gate and evaluation sizes."""

    min_f1_gain: float = Field(0.0, ge=-1.0, le=1.0)
    max_test_rows: int | None = Field(None, ge=1)
    bootstrap_samples: int = Field(1000, ge=100)
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    max_generation_rows: int = Field(100, ge=1)
    max_new_tokens: int = Field(64, ge=1)


class Recipe(_Strict):
    """A whole fine-tuning task: data, cleaning, gates, prompt, model, training, evaluation."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    task: Literal["classification", "instruction", "chat"] = "classification"
    labels: list[str] = Field(default_factory=list)
    label_aliases: dict[str, str] = Field(default_factory=dict)
    data: DataConfig = DataConfig()
    cleaning: CleaningConfig = CleaningConfig()
    quality: QualityConfig = QualityConfig()
    split: SplitConfig = SplitConfig()
    prompt: PromptConfig = Field(default_factory=PromptConfig, validate_default=True)
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    training: TrainingConfig = TrainingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    registered_model_name: str | None = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("task") == "classification" and len(labels) < 2:
            raise ValueError("classification needs at least two labels")
        if len(set(labels)) != len(labels):
            raise ValueError("labels has duplicates")
        return labels

    @field_validator("label_aliases")
    @classmethod
    def _aliases(cls, aliases: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        labels = info.data.get("labels") or []
        bad = {k: v for k, v in aliases.items() if v not in labels}
        if bad:
            raise ValueError(f"aliases map to unknown labels {bad}; allowed targets: {labels}")
        return aliases

    @field_validator("prompt")
    @classmethod
    def _template(cls, prompt: PromptConfig, info: ValidationInfo) -> PromptConfig:
        task = info.data.get("task")
        placeholder = {"classification": "{text}", "instruction": "{prompt}"}.get(task or "")
        if placeholder and placeholder not in prompt.template:
            raise ValueError(
                f"prompt.template must contain {placeholder} for task {task!r}, "
                f"got {prompt.template!r}"
            )
        return prompt

    @property
    def model_name(self) -> str:
        """Registered model name: explicit, or derived from the recipe name."""
        return self.registered_model_name or f"ft-{self.name}"

    def content_hash(self, *sections: str) -> str:
        """A stable hash of the named top-level sections (all of them when none are named).

        Each asset versions itself by the sections it reads, so changing the learning rate
        does not re-clean the data.
        """
        dumped = self.model_dump(mode="json")
        if sections:
            dumped = {k: dumped[k] for k in sections}
        canonical = json.dumps(dumped, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def cleaning_hash(self) -> str:
        """Version of the knobs that decide which rows are clean (the column mapping is
        versioned per partition, with the raw file)."""
        return self.content_hash("task", "labels", "label_aliases", "cleaning")

    def tokenization_hash(self) -> str:
        """Version of everything that decides the splits and the token ids."""
        return self.content_hash(
            "task", "labels", "label_aliases", "cleaning", "split", "prompt", "model"
        )


def _format_error(err: dict[str, Any], data: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "<recipe>"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        parent_model = _model_at(err["loc"][:-1])
        allowed = sorted(parent_model.model_fields) if parent_model else []
        return f"field '{loc}': unknown field; allowed fields here: {', '.join(allowed)}"
    if err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
    if "input" in err and not isinstance(err["input"], dict):
        return f"field '{loc}': {msg} (got {err['input']!r})"
    return f"field '{loc}': {msg}"


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = Recipe
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        for arg in list(candidates):
            candidates.extend(getattr(arg, "__args__", ()))
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


def parse_recipe(data: Any, origin: str = "<recipe>") -> Recipe:
    """Validate a recipe mapping; raise RecipeError naming every bad field."""
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: a recipe must be a YAML mapping, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        lines = [_format_error(e, data) for e in exc.errors()]
        raise RecipeError(f"{origin}: invalid recipe:\n  " + "\n  ".join(lines)) from None


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe YAML file."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    return parse_recipe(data, origin=str(path))
