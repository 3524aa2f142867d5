"""`ft-pipeline init`, the model half: base model, head, lengths, training and evaluation.

Token lengths are measured on the clean rows with the chosen model's tokenizer
(`lib/model/sizing.py`), and every size written says what it was measured on.
"""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pandas as pd

from ft_pipeline.init_yaml import Draft, InitError
from ft_pipeline.lib.model.base_models import load_tokenizer, max_positions
from ft_pipeline.lib.model.sizing import (
    MINILM,
    Lengths,
    choose_base,
    choose_max_length,
    choose_training,
    measure,
    truncation_limit,
)
from ft_pipeline.recipe import ModelConfig, SplitConfig

TOKEN_SAMPLE = 2000  # clean rows tokenized to measure token lengths
HEAD_TAIL_FROM = 0.10  # share of shortened rows from which both ends of a text are kept
TRAIN_SHARE = 1 - SplitConfig().validation - SplitConfig().test


def _truncation_field() -> bool:
    """Whether this recipe schema has `model.truncation` with a `head_tail` choice."""
    info = ModelConfig.model_fields.get("truncation")
    return info is not None and "head_tail" in get_args(info.annotation)


def _measured(draft: Draft, kept: pd.DataFrame, cache_root: Path, base: str, head: str):
    draft.set(("model", "base"), base)
    draft.set(("model", "head"), head)
    recipe = draft.recipe()
    sample = kept.sample(min(len(kept), TOKEN_SAMPLE), random_state=0)
    return measure(sample, recipe, load_tokenizer(base, cache_root))


def size_model(draft: Draft, kept: pd.DataFrame, cache_root: Path, cuda: bool) -> None:
    """Set model, quality.max_truncation_rate, lora, training and evaluation in `draft`."""
    task = draft.data["task"]
    if kept.empty:
        raise InitError("cleaning would quarantine every row: see the reasons above")
    device = "cuda" if cuda else "cpu"
    base, head = choose_base(task, cuda, long_inputs=False)
    lengths = _measured(draft, kept, cache_root, base.value, head.value)
    if cuda and task == "classification" and lengths.pct(90) > 512:
        base, head = choose_base(task, cuda, long_inputs=True)
        lengths = _measured(draft, kept, cache_root, base.value, head.value)
    draft.set(("model", "base"), base.value, base.why)
    draft.set(("model", "head"), head.value, head.why)
    limit = max_positions(str(base.value))
    max_length = choose_max_length(lengths, limit, device)
    draft.set(("model", "max_length"), max_length.value, max_length.why)
    shown = f"p50 {lengths.pct(50):,}, p99 {lengths.pct(99):,}, max {int(lengths.tokens.max()):,}"
    draft.report.append(
        f"tokens ({base.value} tokenizer, {len(lengths.tokens):,} clean rows): {shown}"
    )
    draft.report.append(f"model: {base.value}, head {head.value}: {base.why}")
    for alternative in base.alternatives:
        draft.report.append(f"  alternative: {alternative}")
    draft.report.append(f"  model.max_length {max_length.value}: {max_length.why}")
    for alternative in max_length.alternatives:
        draft.report.append(f"  alternative: {alternative}")
    _truncation(draft, lengths, int(max_length.value))
    _training(draft, kept, lengths, str(base.value), str(head.value), int(max_length.value), cuda)
    _evaluation(draft, lengths, int(max_length.value), cuda)


def _truncation(draft: Draft, lengths: Lengths, max_length: int) -> None:
    rate = truncation_limit(lengths, max_length)
    draft.set(("quality", "max_truncation_rate"), rate.value, rate.why)
    draft.report.append(f"  quality.max_truncation_rate {rate.value}: {rate.why}")
    share = lengths.share_over(max_length)
    if share >= HEAD_TAIL_FROM and _truncation_field():
        why = (
            f"{share:.0%} of the rows are longer than max_length: keep the start and the end "
            "of each (the default, head, keeps only the start)"
        )
        draft.set(("model", "truncation"), "head_tail", why)
        draft.report.append(f"  model.truncation head_tail: {why}")


def _training(
    draft: Draft,
    kept: pd.DataFrame,
    lengths: Lengths,
    base: str,
    head: str,
    max_length: int,
    cuda: bool,
) -> None:
    if base == MINILM:
        draft.set(("lora", "target_modules"), "all-linear", "BERT's layers: every linear one")
    else:
        draft.set(("lora", "target_modules"), ["q_proj", "k_proj", "v_proj", "o_proj"])
    train_rows = max(1, int(len(kept) * TRAIN_SHARE))
    mean = float(pd.Series(lengths.tokens).clip(upper=max_length).mean())
    plan = choose_training(base, head, train_rows, mean, max_length, cuda)
    rate = 1e-3 if head == "classifier" else 5e-4
    why_rate = (
        "the classifier recipes' rate (docs/heads-and-benchmarks.md)"
        if head == "classifier"
        else "LoRA on a small chat model, few rows: a rate above the default 2e-4"
    )
    draft.set(("training", "learning_rate"), rate, why_rate)
    draft.set(("training", "batch_size"), plan.batch_size)
    if plan.gradient_accumulation > 1:
        updates = plan.batch_size * plan.gradient_accumulation
        why = f"{updates} rows per update, {plan.batch_size} at a time to bound memory"
        draft.set(("training", "gradient_accumulation"), plan.gradient_accumulation, why)
    why_epochs = f"about {train_rows:,} training rows: few rows take more passes"
    draft.set(("training", "epochs"), plan.epochs, why_epochs)
    draft.set(("training", "max_train_rows"), plan.max_train_rows, plan.why)
    draft.set(("training", "max_val_rows"), 500 if cuda else 200)
    draft.set(("training", "eval_every"), plan.eval_every, "about 8 evaluations per run")
    draft.set(("training", "checkpoint_every"), plan.eval_every)
    draft.set(("training", "precision"), "auto", "bf16 where the CPU or GPU runs it natively")
    draft.report.append(f"training: {plan.why}")


def _evaluation(draft: Draft, lengths: Lengths, max_length: int, cuda: bool) -> None:
    rows = None if cuda else (500 if max_length > 256 else 1000)
    why = "every test row" if cuda else "a stratified sample of the test split, CPU-sized"
    draft.set(("evaluation", "max_test_rows"), rows, why)
    if lengths.answer is not None:
        need = lengths.pct(99, answer=True)
        new_tokens = min(256, max(16, int(need * 1.25) + 8))
        draft.set(
            ("evaluation", "max_new_tokens"),
            new_tokens,
            f"p99 of the answers is {need} tokens",
        )
        draft.set(("evaluation", "max_generation_rows"), 200 if cuda else 50)
