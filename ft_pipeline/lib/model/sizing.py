"""Size a starter recipe to its data and machine: base model, head, max_length, training.

The rules follow the measurements in docs/heads-and-benchmarks.md: for a label set on a CPU,
the MiniLM classifier is the cheap strong choice; generation (instruction, chat) needs
SmolLM2 with the lm head. Token lengths are measured with the chosen model's tokenizer and
the pipeline's own rendering (`rendering.encode_plain` / `encode_rows`), so the truncation
rate estimated here is the one `tokenized_dataset_truncation_rate` will measure.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ft_pipeline.lib.data.rendering import encode_plain, encode_rows
from ft_pipeline.recipe import Recipe

MINILM = "bundled:all-minilm-l6-v2"
SMOLLM = "bundled:smollm2-135m-instruct"
MEASURE_LENGTH = 32768  # the largest model.max_length: nothing is cut while measuring
LADDER = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
HEADROOM = 1.1  # room for somewhat longer rows in the next files
# On 2 idle CPU cores MiniLM trains 14.2 rows/s of 256 tokens but 4.9 of 512 (LoRA on all
# linear layers, bf16 autocast): past 256 tokens a CPU pays more per row than the row adds.
DEVICE_CAP = {"cpu": 256, "cuda": 2048}
# Training tokens per second on 2 idle CPU cores: SmolLM2 459 (bench/train_throughput.py),
# MiniLM 3,600 at 256 tokens (the measurement above), less some for validation and checkpoints.
CPU_TOKENS_PER_S = {MINILM: 3000, SMOLLM: 450}
CPU_BUDGET_S = 300  # a first run should train in minutes


@dataclass(frozen=True)
class Lengths:
    """Token lengths of a sample of clean rows, rendered as the pipeline renders them."""

    tokens: np.ndarray  # each row, prompt and answer together
    answer: np.ndarray | None  # lm head: the answer tokens of each row

    def share_over(self, max_length: int) -> float:
        return float((self.tokens > max_length).mean()) if len(self.tokens) else 0.0

    def pct(self, q: float, answer: bool = False) -> int:
        values = self.answer if answer else self.tokens
        return int(np.percentile(values, q)) if values is not None and len(values) else 0


@dataclass(frozen=True)
class Choice:
    """One decision: the value, why, and what else could be picked."""

    value: Any
    why: str
    alternatives: tuple[str, ...] = ()


def choose_base(task: str, cuda: bool, long_inputs: bool) -> tuple[Choice, Choice]:
    """(base model, head) for the task on this machine."""
    if task != "classification":
        why = f"{task} generates answers: the lm head, on the bundled chat model"
        return Choice(SMOLLM, why), Choice("lm", "generation needs the lm head")
    alternatives = (
        f"model.base {SMOLLM} with head classifier: 0.640 on the same 1,500 rows in 3.4 "
        "CPU-minutes",
        f"model.base {SMOLLM} with head lm, if the label set is not fixed",
    )
    if cuda and long_inputs:
        why = (
            "CUDA is available and the inputs are longer than MiniLM's 512 positions: "
            "SmolLM2's classifier head reads up to 2,048 tokens of each"
        )
        return Choice(SMOLLM, why, (f"model.base {MINILM}: faster, reads 512 tokens",)), Choice(
            "classifier", "a label set: a classification head (docs/heads-and-benchmarks.md)"
        )
    why = (
        "a label set: MiniLM with a classification head reached macro-F1 0.690 on 1,500 "
        "training rows in 1.0 CPU-minute (docs/heads-and-benchmarks.md)"
    )
    head = Choice("classifier", "MiniLM is an encoder: the classifier head is its only head")
    return Choice(MINILM, why, alternatives), head


def measure(rows: pd.DataFrame, recipe: Recipe, tokenizer) -> Lengths:
    """Token lengths of clean rows under `recipe`'s head and template, nothing cut."""
    import transformers

    wide = recipe.model.model_copy(update={"max_length": MEASURE_LENGTH})
    draft = recipe.model_copy(update={"model": wide})
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "longer than the model's maximum": expected
    try:
        plain = recipe.model.head == "classifier"
        encoded = (encode_plain if plain else encode_rows)(rows, draft, tokenizer).rows
    finally:
        transformers.logging.set_verbosity(verbosity)
    tokens = encoded["n_tokens"].to_numpy(dtype=int)
    answer = None if plain else encoded["n_answer_tokens"].to_numpy(dtype=int)
    return Lengths(tokens, answer)


def ladder(need: float) -> int:
    """The smallest of the usual lengths that holds `need` tokens (the largest otherwise)."""
    return next((step for step in LADDER if step >= need), LADDER[-1])


def choose_max_length(lengths: Lengths, model_limit: int | None, device: str) -> Choice:
    """A max_length that holds the p99 row, capped by the model and the machine."""
    need = lengths.pct(99)
    cap = min(DEVICE_CAP[device], model_limit or DEVICE_CAP[device])
    wanted = ladder(need * HEADROOM)
    value = min(wanted, cap)
    why = f"p99 of the rows is {need:,} tokens"
    alternatives: tuple[str, ...] = ()
    if value < wanted:
        by_model = model_limit is not None and model_limit <= DEVICE_CAP[device]
        limit = f"the model's {model_limit} positions" if by_model else f"{cap} on a {device}"
        why += f", capped at {limit}"
        longer = min(wanted, model_limit or wanted)
        if not by_model and longer > value:
            alternatives = (
                f"model.max_length {longer}: more of each text, at about {longer / value:.0f}x "
                "or more of the training time per row",
            )
    return Choice(value, why, alternatives)


def truncation_limit(lengths: Lengths, max_length: int) -> Choice:
    """quality.max_truncation_rate: a margin above the measured share of rows to shorten."""
    rate, n = lengths.share_over(max_length), len(lengths.tokens)
    if rate == 0:
        return Choice(0.02, f"no row of {n:,} measured is over {max_length} tokens")
    margin = max(0.02, 2 * math.sqrt(rate * (1 - rate) / max(1, n)))
    value = min(1.0, math.ceil((rate + margin) * 100) / 100)
    why = (
        f"{rate:.1%} of {n:,} rows measured are over {max_length} tokens and will be "
        "shortened; the gate sits just above, so the first run does not stop on it"
    )
    return Choice(value, why)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Training:
    """The training and evaluation sizes, with the estimate that sized them."""

    max_train_rows: int | None
    epochs: int
    batch_size: int
    gradient_accumulation: int
    eval_every: int
    minutes: float | None  # estimated training time on this CPU (None on CUDA)
    why: str


def choose_training(
    base: str, head: str, train_rows: int, mean_tokens: float, max_length: int, cuda: bool
) -> Training:
    """Rows, epochs and batches: all rows when they fit the CPU budget, else a sample."""
    epochs = 3 if train_rows <= 1000 else 2 if train_rows <= 10000 else 1
    if head == "classifier" and base == MINILM:
        batch = 32 if max_length <= 256 else 16
        accumulation = 1
    else:
        batch = max(1, min(8, 2048 // max_length))
        accumulation = max(1, 16 // batch)
    if cuda:
        batch, accumulation = batch * 4, max(1, accumulation // 4)
    mean = max(1.0, min(mean_tokens, max_length))
    rows, minutes, why = train_rows, None, "CUDA: every training row"
    if not cuda:
        rate = CPU_TOKENS_PER_S.get(base, CPU_TOKENS_PER_S[SMOLLM]) * cores() / 2
        budget = int(CPU_BUDGET_S * rate / (epochs * mean))
        rows = min(train_rows, max(200, budget // 100 * 100))
        minutes = rows * epochs * mean / rate / 60
        why = (
            f"about {rate:,.0f} training tokens/s on {cores()} idle CPU cores, rows of "
            f"{mean:,.0f} tokens on average: {rows:,} rows x {epochs} epochs "
            f"is about {minutes:.1f} minutes"
        )
    steps = math.ceil(rows * epochs / (batch * accumulation))
    eval_every = max(5, min(50, steps // 8))
    sampled = rows if rows < train_rows else None
    return Training(sampled, epochs, batch, accumulation, eval_every, minutes, why)
