"""The recipe's model half: prompt, base model, LoRA, training, evaluation and automation.

`ft_pipeline.recipe.Recipe` puts the sections together; `docs/recipe-reference.md` is
generated from the `Field(description=...)` of each knob (`make docs`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ft_pipeline.recipe_data import Float, Int, _Strict


class PromptConfig(_Strict):
    """How a row becomes a chat conversation for the base model's chat template."""

    system: str | None = Field(
        None,
        description="system message put before each conversation (a chat row that has its "
        "own keeps it); null: none",
    )
    template: str = Field(
        "{text}",
        description="the user message; `{text}` (classification) or `{prompt}` (instruction) "
        "is replaced by the row's input, and must appear; chat rows bring their own messages",
    )


class ModelConfig(_Strict):
    """The base model: bundled:<name>, a Hugging Face id, or a local folder."""

    base: str = Field(
        "bundled:smollm2-135m-instruct",
        description="`bundled:smollm2-135m-instruct`, `bundled:all-minilm-l6-v2`, a local "
        "Hugging Face folder, or a Hugging Face id already in the local cache",
    )
    head: Literal["lm", "classifier"] = Field(
        "lm",
        description="lm: next-token label scoring; classifier: a classification head "
        "(task classification; multilabel, which needs it, gets one sigmoid per label). "
        "When unset: classifier for classification and multilabel, else lm",
    )
    max_length: Int = Field(
        256,
        ge=8,
        le=32768,
        description="most tokens in a row; a longer row's input is shortened, never its answer",
    )
    truncation: Literal["head", "head_tail"] = Field(
        "head",
        description="which tokens of a too-long input are kept, in training, evaluation and "
        "serving alike (special and chat-template tokens always stay): head: the first ones; "
        "head_tail: the first quarter and the last three quarters (Sun et al. 2019), for long "
        "documents whose end matters too",
    )


class LoraConfig(_Strict):
    """LoRA hyperparameters (translated to peft.LoraConfig in one place)."""

    r: Int = Field(16, ge=1, description="rank of the LoRA update matrices")
    alpha: Int = Field(32, ge=1, description="LoRA scaling: updates are scaled by alpha / r")
    dropout: Float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the LoRA layers' input")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="names of the modules LoRA adapts, or `all-linear` for every linear layer",
    )
    use_dora: bool = Field(
        False,
        description="DoRA (peft use_dora): each adapted weight learns a magnitude beside its "
        "low-rank direction; often better at low rank, slower per step",
    )
    use_rslora: bool = Field(
        False,
        description="rank-stabilised LoRA (peft use_rslora): updates scaled by alpha / sqrt(r) "
        "instead of alpha / r, so a higher rank keeps learning",
    )


class DistributedConfig(_Strict):
    """How many processes train one adapter, and how they share the work.

    `single`: one process (the default). `ddp`: data parallel, each process takes a share of
    every batch and gradients are summed, so steps and rows seen are those of one process
    (gloo on CPU, NCCL on CUDA). `fsdp`: the same, with every weight (the frozen base model
    too) sharded across the processes, for a base model too large for one device.
    Not part of the adapter's key: like the device, it changes how fast, not what, is trained.
    """

    strategy: Literal["single", "ddp", "fsdp"] = Field(
        "single",
        description="single: one process; ddp: each process takes a share of every batch; "
        "fsdp: as ddp, with every weight sharded across the processes",
    )
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

    learning_rate: Float = Field(
        2e-4, gt=0.0, lt=1.0, description="peak learning rate of the LoRA weights (AdamW)"
    )
    head_learning_rate: Float | None = Field(
        None, gt=0.0, lt=1.0, description="classifier head's rate; default learning_rate"
    )
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="learning-rate schedule over the steps"
    )
    warmup_ratio: Float = Field(
        0.05, ge=0.0, lt=1.0, description="share of the steps over which the rate warms up"
    )
    batch_size: Int = Field(
        8, ge=1, description="rows per micro-batch, shared out among the processes (ddp/fsdp)"
    )
    gradient_accumulation: Int = Field(1, ge=1, description="micro-batches per optimizer update")
    epochs: Float = Field(
        1.0, gt=0.0, description="passes over the training rows (may be fractional)"
    )
    max_steps: Int | None = Field(
        None, ge=1, description="optimizer updates to run, overriding epochs; null: from epochs"
    )
    max_train_rows: Int | None = Field(
        None,
        ge=1,
        description="train on a stratified, seeded sample of this many training rows; null: all",
    )
    max_val_rows: Int | None = Field(
        300,
        ge=1,
        description="validation rows (a stratified, seeded sample) for the validation loss; "
        "null: all",
    )
    weight_decay: Float = Field(
        0.0, ge=0.0, lt=1.0, description="AdamW weight decay of the trained weights; 0: none"
    )
    label_smoothing: Float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="classifier head: label smoothing of the training loss (the validation "
        "loss stays plain cross-entropy); 0: none",
    )
    neftune_alpha: Float | None = Field(
        None,
        gt=0.0,
        description="lm head: NEFTune, uniform noise on the input embeddings while training, "
        "of size alpha / sqrt(tokens x width) (transformers' hook; 5 is common); null: none",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 autocast where the CPU or GPU runs it natively (fp16 on a "
        "GPU without bf16), else fp32; fp32: no autocast; bf16: bf16 autocast; fp16: fp16 "
        "autocast (fp16 always trains with a gradient scaler)",
    )
    eval_every: Int = Field(
        50, ge=1, description="optimizer updates between validation-loss evaluations"
    )
    checkpoint_every: Int = Field(50, ge=1, description="optimizer updates between checkpoints")
    early_stopping_patience: Int | None = Field(
        3,
        ge=1,
        description="stop after this many evaluations without a better validation loss; "
        "null: never stop early",
    )
    seed: Int = Field(
        42,
        description="seed of the row samples, the weight initialisation and batch order, "
        "and the TF-IDF baseline",
    )
    distributed: DistributedConfig = Field(
        DistributedConfig(), description="how many processes train, and how they share it"
    )

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

    min_f1_gain: Float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="gate: the lower bound of the paired CI of the fine-tuned model's gain over "
        "the base model on the same rows must reach this (macro-F1; token F1 for instruction "
        "and chat); null: 0 for classification, 0.02 for instruction and chat",
    )
    max_regression: Float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="gate: the lower bound of the paired CI of (fine-tuned - champion), the "
        "champion re-scored on the same rows, must be above -max_regression",
    )
    max_test_rows: Int | None = Field(
        None,
        ge=1,
        description="score a stratified, seeded sample of this many test rows; null: all",
    )
    bootstrap_samples: Int = Field(
        1000, ge=100, description="bootstrap resamples for the confidence intervals"
    )
    confidence: Float = Field(
        0.95, gt=0.5, lt=1.0, description="level of the bootstrap confidence intervals"
    )
    max_generation_rows: Int = Field(
        100, ge=1, description="test rows answered by generation (instruction and chat)"
    )
    max_new_tokens: Int = Field(
        64, ge=1, description="most tokens generated per answer (instruction and chat)"
    )
    sample_prompts: Int = Field(
        10,
        ge=0,
        description="instruction and chat: test prompts shown first in the report, each with "
        "its reference, the base model's answer and the fine-tuned answer",
    )
    must_beat_baseline: bool = Field(
        False,
        description="classification: the gate also requires the fine-tuned model to beat "
        "TF-IDF + logistic regression on the same rows (paired CI of the difference above 0)",
    )


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
