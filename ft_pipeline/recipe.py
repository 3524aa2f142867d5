"""The recipe: one validated YAML file that holds every task-specific knob.

A new dataset or base model is a new recipe, not new code. Validation errors name the
field, the bad value and what is allowed, so a typo fails at load rather than an hour into
training.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

# The sections are re-exported so that users import everything from ft_pipeline.recipe.
from ft_pipeline.recipe_data import (
    BUNDLED_CORPORA,
    CleaningConfig,
    ColumnMapping,
    DataConfig,
    QualityConfig,
    SourceSpec,
    SplitConfig,
    _Strict,
    same_up_to_case,
)
from ft_pipeline.recipe_deploy import CardConfig, CounterfactualConfig, DriftConfig, ServingConfig
from ft_pipeline.recipe_errors import format_error
from ft_pipeline.recipe_experiment import ExperimentConfig, Variant, expand_variants
from ft_pipeline.recipe_labels import (
    MultilabelConfig,
    check_head,
    check_label_columns,
    check_label_count,
    default_head,
)
from ft_pipeline.recipe_model import (
    AutomationConfig,
    DistributedConfig,
    EvaluationConfig,
    LoraConfig,
    ModelConfig,
    PromptConfig,
    TrainingConfig,
)

__all__ = [
    "BUNDLED_CORPORA",
    "AutomationConfig",
    "CardConfig",
    "CleaningConfig",
    "ColumnMapping",
    "CounterfactualConfig",
    "DataConfig",
    "DistributedConfig",
    "DriftConfig",
    "EvaluationConfig",
    "ExperimentConfig",
    "LoraConfig",
    "ModelConfig",
    "MultilabelConfig",
    "PromptConfig",
    "QualityConfig",
    "Recipe",
    "RecipeError",
    "ServingConfig",
    "SourceSpec",
    "SplitConfig",
    "TrainingConfig",
    "load_recipe",
    "parse_recipe",
]


class RecipeError(ValueError):
    """A recipe file that cannot be used; the message says which field and why."""


class Recipe(_Strict):
    """A whole fine-tuning task: data, cleaning, gates, prompt, model, training, evaluation."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_\-]*$",
        description="the task's name (lower case, digits, `_`, `-`): it names the state "
        "folders and the MLflow experiment",
    )
    task: Literal["classification", "multilabel", "instruction", "chat"] = Field(
        "classification",
        description="classification: text -> label; multilabel: text -> a set of labels "
        "(none, one or several, e.g. emotions); instruction: prompt -> response; "
        "chat: a list of messages ending with the assistant's answer",
    )
    labels: list[str] = Field(
        default_factory=list,
        description="the label set (classification and multilabel: at least two)",
    )
    label_aliases: dict[str, str] = Field(
        default_factory=dict, description="data label -> one of `labels`, e.g. `neg: negative`"
    )
    multilabel: MultilabelConfig = Field(
        MultilabelConfig(), description="task multilabel: how a row's label set is written"
    )
    data: DataConfig = Field(DataConfig(), description="where rows come from")
    cleaning: CleaningConfig = Field(CleaningConfig(), description="row normalisation, filters")
    quality: QualityConfig = Field(QualityConfig(), description="thresholds of the data gates")
    split: SplitConfig = Field(SplitConfig(), description="train/validation/test split")
    prompt: PromptConfig = Field(
        default_factory=PromptConfig,
        validate_default=True,
        description="how a row becomes a conversation",
    )
    model: ModelConfig = Field(ModelConfig(), description="the base model and its head")
    lora: LoraConfig = Field(LoraConfig(), description="LoRA hyperparameters")
    training: TrainingConfig = Field(TrainingConfig(), description="optimisation settings")
    evaluation: EvaluationConfig = Field(
        EvaluationConfig(), description="the promotion gate and evaluation sizes"
    )
    automation: AutomationConfig = Field(
        AutomationConfig(), description="when the pipeline reruns by itself"
    )
    counterfactual: CounterfactualConfig = Field(
        CounterfactualConfig(), description="identity-term swaps re-scored (the model card)"
    )
    drift: DriftConfig = Field(DriftConfig(), description="new partitions against training data")
    card: CardConfig = Field(CardConfig(), description="what the model card says it is for")
    serving: ServingConfig = Field(ServingConfig(), description="limits of the served model")
    registered_model_name: str | None = Field(
        None, description="MLflow registered model name; null: `ft-<name>`"
    )
    experiment: ExperimentConfig | None = Field(
        None,
        description="variants of this recipe, trained and compared on the same test rows "
        "(`make experiment`, docs/experiments.md); null: one run of the recipe as written",
    )
    # A variant whose tokenization differs from its recipe's reads its own tokenized dataset.
    _dataset: str | None = PrivateAttr(None)

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: list[str], info: ValidationInfo) -> list[str]:
        check_label_count(info.data.get("task"), labels)
        if len(set(labels)) != len(labels):
            raise ValueError("labels has duplicates")
        for label in labels:
            if not label.strip() or label != label.strip():
                raise ValueError(f"label {label!r} is empty or has leading/trailing spaces")
        same_up_to_case("labels", [(lab, lab) for lab in labels])
        return labels

    @field_validator("label_aliases")
    @classmethod
    def _aliases(cls, aliases: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        labels = info.data.get("labels") or []
        bad = {k: v for k, v in aliases.items() if v not in labels}
        if bad:
            raise ValueError(f"aliases map to unknown labels {bad}; allowed targets: {labels}")
        same_up_to_case("label_aliases", [*((lab, lab) for lab in labels), *aliases.items()])
        return aliases

    @model_validator(mode="before")
    @classmethod
    def _default_head(cls, data: Any) -> Any:
        """An unset model.head is the task's default (`recipe_labels.default_head`)."""
        if not isinstance(data, dict) or not isinstance(data.get("model") or {}, dict):
            return data  # not a mapping: the field validators report it
        model = dict(data.get("model") or {})
        if model.get("head") is None:
            model["head"] = default_head(data.get("task", "classification"))
        return {**data, "model": model}

    @field_validator("model")
    @classmethod
    def _head(cls, model: ModelConfig, info: ValidationInfo) -> ModelConfig:
        check_head(model.head, info.data.get("task"))
        return model

    @field_validator("data")
    @classmethod
    def _label_columns(cls, data: DataConfig, info: ValidationInfo) -> DataConfig:
        check_label_columns(info.data.get("task"), info.data.get("labels") or [], data)
        return data

    @field_validator("training")
    @classmethod
    def _head_knobs(cls, training: TrainingConfig, info: ValidationInfo) -> TrainingConfig:
        model = info.data.get("model")
        head = model.head if model is not None else None
        if training.label_smoothing and head != "classifier":
            raise ValueError(
                f"label_smoothing applies to the classifier head, and model.head is {head!r}: "
                "set training.label_smoothing to 0 or model.head to classifier"
            )
        if training.neftune_alpha is not None and head != "lm":
            raise ValueError(
                f"neftune_alpha applies to the lm head, and model.head is {head!r}: "
                "remove training.neftune_alpha or set model.head to lm"
            )
        return training

    @field_validator("prompt")
    @classmethod
    def _template(cls, prompt: PromptConfig, info: ValidationInfo) -> PromptConfig:
        task = info.data.get("task")
        placeholder = {
            "classification": "{text}",
            "multilabel": "{text}",
            "instruction": "{prompt}",
        }
        placeholder = placeholder.get(task or "")
        if placeholder and placeholder not in prompt.template:
            raise ValueError(
                f"prompt.template must contain {placeholder} for task {task!r}, "
                f"got {prompt.template!r}"
            )
        return prompt

    @model_validator(mode="after")
    def _variants_valid(self) -> Recipe:
        expand_variants(self)  # each variant is a whole recipe: its errors name it
        return self

    def variants(self) -> list[Variant]:
        """The experiment's variants ([] without an experiment section)."""
        return expand_variants(self)

    def with_dataset(self, name: str) -> Recipe:
        """This recipe, reading and writing the tokenized dataset `name`."""
        copy = self.model_copy()
        copy._dataset = name
        return copy

    @property
    def dataset_name(self) -> str:
        """The tokenized dataset (and partition cache) this recipe trains on."""
        return self._dataset or self.name

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
        return self.content_hash("task", "labels", "label_aliases", "cleaning", *self._sets())

    def _sets(self) -> tuple[str, ...]:
        # Only a multilabel recipe hashes its multilabel section: others keep their versions.
        return ("multilabel",) if self.task == "multilabel" else ()

    def tokenization_hash(self) -> str:
        """Version of everything that decides the splits and the token ids."""
        return self.content_hash(
            "task", "labels", "label_aliases", "cleaning", "split", "prompt", "model", *self._sets()
        )


def parse_recipe(data: Any, origin: str = "<recipe>") -> Recipe:
    """Validate a recipe mapping; raise RecipeError naming every bad field."""
    if not isinstance(data, dict):
        raise RecipeError(f"{origin}: a recipe must be a YAML mapping, got {type(data).__name__}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        lines = [format_error(e, Recipe) for e in exc.errors()]
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
