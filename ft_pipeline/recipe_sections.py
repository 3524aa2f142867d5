"""The recipe's sections: data, cleaning, quality gates, split, prompt, model, LoRA,
training and evaluation. `ft_pipeline.recipe.Recipe` puts them together."""

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
    source_root: str = Field(
        ".", description="folder that source paths must stay in (relative to the recipe's folder)"
    )
    columns: ColumnMapping = ColumnMapping()
    encoding: str = "utf-8"
    max_file_mb: Float = Field(
        100, gt=0, description="larger source files are refused before reading (MB = 2**20 bytes)"
    )

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
    min_confidence: Float | None = Field(None, ge=0.0, le=1.0)
    min_chars: Int = Field(1, ge=1)
    max_chars: Int = Field(1000, ge=1)
    near_duplicate_threshold: Float | None = Field(0.9, gt=0.0, le=1.0)

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

    min_label_share: Float = Field(0.05, ge=0.0, lt=1.0)
    max_truncation_rate: Float = Field(0.02, ge=0.0, le=1.0)


class SplitConfig(_Strict):
    """Train/validation/test split by a seeded hash of each text: stable as data is added."""

    validation: Float = Field(0.1, gt=0.0, lt=0.5)
    test: Float = Field(0.1, gt=0.0, lt=0.5)
    seed: Int = 42

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
    head: Literal["lm", "classifier"] = Field(
        "lm", description="lm: next-token label scoring; classifier: a classification head"
    )
    max_length: Int = Field(256, ge=8, le=32768)


class LoraConfig(_Strict):
    """LoRA hyperparameters (translated to peft.LoraConfig in one place)."""

    r: Int = Field(16, ge=1)
    alpha: Int = Field(32, ge=1)
    dropout: Float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )


class DistributedConfig(_Strict):
    """How many processes train one adapter, and how they share the work.

    `single`: one process (the default). `ddp`: data parallel, each process takes a share of
    every batch and gradients are summed, so steps and rows seen are those of one process
    (gloo on CPU, NCCL on CUDA). `fsdp`: the same, with every weight (the frozen base model
    too) sharded across the processes, for a base model too large for one device.
    Not part of the adapter's key: like the device, it changes how fast, not what, is trained.
    """

    strategy: Literal["single", "ddp", "fsdp"] = "single"
    processes: Int | None = Field(
        None, ge=1, le=512, description="processes on this machine (ddp/fsdp; single: 1)"
    )

    @model_validator(mode="after")
    def _processes(self) -> DistributedConfig:
        if self.strategy == "single" and self.processes not in (None, 1):
            raise ValueError(
                f"processes is {self.processes} but strategy is 'single'; "
                f"set strategy: ddp to train on {self.processes} processes"
            )
        if self.strategy != "single" and self.processes is None:
            raise ValueError(
                f"strategy {self.strategy!r} needs processes: how many to start on this "
                "machine (on CPU at most its cores, on CUDA at most its GPUs)"
            )
        return self

    @property
    def nproc(self) -> int:
        return self.processes or 1


class TrainingConfig(_Strict):
    """Optimisation settings for the adapter."""

    learning_rate: Float = Field(2e-4, gt=0.0, lt=1.0)
    head_learning_rate: Float | None = Field(
        None, gt=0.0, lt=1.0, description="classifier head's rate; default learning_rate"
    )
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: Float = Field(0.05, ge=0.0, lt=1.0)
    batch_size: Int = Field(8, ge=1)
    gradient_accumulation: Int = Field(1, ge=1)
    epochs: Float = Field(1.0, gt=0.0)
    max_steps: Int | None = Field(None, ge=1)
    max_train_rows: Int | None = Field(None, ge=1)
    max_val_rows: Int | None = Field(300, ge=1)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    eval_every: Int = Field(50, ge=1)
    checkpoint_every: Int = Field(50, ge=1)
    early_stopping_patience: Int | None = Field(3, ge=1)
    seed: Int = 42
    distributed: DistributedConfig = DistributedConfig()

    @model_validator(mode="after")
    def _batch_per_process(self) -> TrainingConfig:
        if self.batch_size < self.distributed.nproc:
            raise ValueError(
                f"batch_size ({self.batch_size}) is smaller than distributed.processes "
                f"({self.distributed.nproc}): each process takes a share of every batch"
            )
        return self


class EvaluationConfig(_Strict):
    """The promotion gate and evaluation sizes."""

    min_f1_gain: Float = Field(0.0, ge=-1.0, le=1.0)
    max_test_rows: Int | None = Field(None, ge=1)
    bootstrap_samples: Int = Field(1000, ge=100)
    confidence: Float = Field(0.95, gt=0.5, lt=1.0)
    max_generation_rows: Int = Field(100, ge=1)
    max_new_tokens: Int = Field(64, ge=1)


class AutomationConfig(_Strict):
    """When the pipeline reruns by itself (sensor, declarative automation, schedule)."""

    min_new_rows: Int = Field(
        500, ge=0, description="new training rows needed before automation retrains"
    )
    retrain_cron: str = Field("0 3 * * 1", description="weekly retraining (cron, UTC)")
    landing_interval_s: Int = Field(
        15, ge=1, description="how often the landing sensor looks for new files (seconds)"
    )
    automation_interval_s: Int = Field(
        30, ge=1, description="how often declarative automation is evaluated (seconds)"
    )
