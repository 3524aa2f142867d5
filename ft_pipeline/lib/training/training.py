"""The LoRA training loop: answer-only loss, checkpoints, exact resume, early stopping.

Design choices, each for a measured reason (see bench/):
- the LM head runs only at answer positions (`modeling.answer_loss`); a classifier head
  (`heads.Head`) trains on cross-entropy over labels instead;
- dynamic padding with length-grouped batches (`batching.epoch_batches`);
- bf16 autocast where the hardware has it, fp32 master weights for the LoRA parameters;
- the batch order is a pure function of the seed, and checkpoints hold the optimizer,
  scheduler and RNG state, so a resumed run continues exactly where it stopped;
- checkpoints hold tensors and plain values only (loaded with `weights_only=True`), and a
  damaged newest checkpoint is skipped, with a warning, for the one before it;
- under torchrun, several processes share every batch (`distributed`: DDP, or FSDP with
  the weights sharded too; gloo on CPU, NCCL on CUDA), with the same steps and rows as one
  process.
"""

from __future__ import annotations

import copy
import logging
import math
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ft_pipeline.lib.model.heads import Row, classifier_probs, head_for
from ft_pipeline.lib.model.lora import peft_config
from ft_pipeline.lib.model.thresholds import tune_thresholds, write_thresholds
from ft_pipeline.lib.training import distributed, sharding
from ft_pipeline.lib.training.loop import Loop, RowsHook, total_steps, trainable
from ft_pipeline.recipe import Recipe

__all__ = ["InjectedFault", "StepLog", "TrainResult", "TrainingDiverged", "total_steps"]
__all__ += ["train_adapter"]

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class InjectedFault(RuntimeError):
    """A deliberate crash for resume drills and tests."""


@dataclass
class StepLog:
    """What one optimizer step reports (logged to Dagster and MLflow)."""

    step: int
    total_steps: int
    epoch: int
    train_loss: float
    lr: float
    tokens_per_s: float
    eta_s: float
    val_loss: float | None = None
    grad_norm: float | None = None  # before clipping to 1.0


@dataclass
class TrainResult:
    """The outcome of a training run, with its loss history."""

    adapter_dir: Path
    steps: int
    total_steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    initial_val_loss: float = math.nan
    final_val_loss: float = math.nan
    best_val_loss: float = math.nan
    best_step: int = 0
    stopped_early: bool = False
    resumed_from: int | None = None
    optimizer_steps: int = 0
    skipped_checkpoints: list[str] = field(default_factory=list)
    train_tokens: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0  # the largest of the training processes' peak resident memory

    @property
    def tokens_per_s(self) -> float:
        return self.train_tokens / self.seconds if self.seconds else 0.0


def train_adapter(
    base_dir: str | Path,
    train: Sequence[Row],
    val: Sequence[Row],
    recipe: Recipe,
    out_dir: Path,
    *,
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype | None,
    on_log: Callable[[StepLog], None] | None = None,
    fail_after_steps: int | None = None,
    on_warning: Callable[[str], None] | None = None,
    on_rows: RowsHook | None = None,
) -> TrainResult:
    """Train (or resume) a LoRA adapter; save the best one to `out_dir/adapter`.

    Resumes from the newest checkpoint that verifies; each one skipped as damaged is
    reported to `on_warning` (default: this module's logger) by its path. Launched as one
    of several processes (torchrun), it trains data-parallel (`distributed`): rank 0
    alone calls `on_log` and writes checkpoints and the adapter. `on_rows` sees which
    training rows this process computes on, per step and micro-batch.
    """
    t = recipe.training
    par = distributed.join(device, t.distributed.strategy)
    torch.manual_seed(t.seed)
    model, loop = _build(base_dir, train, val, recipe, out_dir, pad_id, dtype, par)
    resumed_from = loop.resume(on_warning or logger.warning)
    s = loop.state
    if resumed_from is None:
        _validate_first(loop)
    model.train()
    batches = loop.micro_batches()
    steps_this_run, started = 0, time.monotonic()
    stopped_early = False
    while s["step"] < loop.total:
        train_loss, tokens, grad_norm, lr, elapsed = _optimizer_step(loop, batches, on_rows)
        steps_this_run += 1
        val_loss = _scheduled_validation(loop, t.eval_every)
        s["history"].append(
            {
                "step": s["step"],
                "train_loss": train_loss,
                "val_loss": val_loss,
                "lr": lr,
                "grad_norm": grad_norm,
            }
        )
        if on_log and par.main:
            eta = (time.monotonic() - started) / steps_this_run * (loop.total - s["step"])
            tok_s = tokens / elapsed if elapsed else 0.0
            log = (s["step"], loop.total, s["epoch"], train_loss, lr, tok_s, eta, val_loss)
            on_log(StepLog(*log, grad_norm=grad_norm))
        patience = t.early_stopping_patience
        stopped_early = bool(patience and s["bad_evals"] >= patience and s["step"] < loop.total)
        if s["step"] % t.checkpoint_every == 0 or stopped_early:
            loop.save()
        if fail_after_steps is not None and steps_this_run >= fail_after_steps:
            raise InjectedFault(f"fault injected after {steps_this_run} steps (step {s['step']})")
        if stopped_early:
            break

    return _finish(model, loop, out_dir, resumed_from, stopped_early)


def _build(base_dir, train, val, recipe: Recipe, out_dir: Path, pad_id, dtype, par):
    """(model, loop): the LoRA model on this process's device, sharded under FSDP, and
    the loop that trains it (optimizer, scheduler, batches, checkpoints)."""
    from peft import get_peft_model

    head = head_for(recipe)
    model = get_peft_model(head.load(base_dir, par.device, pad_id), peft_config(recipe))
    if recipe.training.neftune_alpha is not None:
        from transformers.integrations.neftune import activate_neftune

        # Noise on the input embeddings in train mode only: validation sees none.
        activate_neftune(model, recipe.training.neftune_alpha)
    par.broadcast_params([p for p in model.parameters() if p.requires_grad])
    root = sharding.shard(model, head, par.device) if par.sharded else None
    if root is not None:
        logger.info(sharding.describe(root, par.rank, par.world))
    return model, Loop(model, recipe, train, val, pad_id, dtype, out_dir, par, root)


def _validate_first(loop: Loop) -> None:
    """A fresh run's step 0: the initial validation loss, also the best so far."""
    s = loop.state
    s["initial_val"] = s["best_val"] = loop.validate()
    first = {"step": 0, "train_loss": None, "val_loss": s["initial_val"], "grad_norm": None}
    s["history"].append({**first, "lr": loop.scheduler.get_last_lr()[0]})


def _optimizer_step(loop: Loop, batches, on_rows: RowsHook | None):
    """One optimizer step over the accumulated micro-batches, counted in `loop.state`.

    Returns (train loss, tokens, grad norm before clipping, lr used, seconds); raises
    `TrainingDiverged` when the loss is not finite."""
    s = loop.state
    step_start = time.monotonic()
    train_loss, tokens = loop.accumulate(batches, on_rows)
    if not math.isfinite(train_loss):
        raise TrainingDiverged(
            f"train loss became {train_loss} at step {s['step'] + 1}; lower training.learning_rate"
        )
    loop.scaler.unscale_(loop.optimizer)  # true gradients (fp16), before clipping
    norm = torch.nn.utils.clip_grad_norm_(loop.params, 1.0)
    grad_norm = float(sharding.full(norm))  # a sharded norm under FSDP: every rank asks
    lr = loop.scheduler.get_last_lr()[0]
    loop.scaler.step(loop.optimizer)  # skipped, with a smaller scale, if they overflowed
    loop.scaler.update()
    loop.scheduler.step()
    loop.optimizer.zero_grad(set_to_none=True)
    if loop.par.sharded:
        sharding.release_freed_memory(loop.par.device)
    s["step"] += 1
    elapsed = time.monotonic() - step_start
    s["tokens"] += tokens
    s["seconds"] += elapsed
    return train_loss, tokens, grad_norm, lr, elapsed


def _scheduled_validation(loop: Loop, eval_every: int) -> float | None:
    """The validation loss every `eval_every` steps and after the last (else None); a new
    best keeps its weights and resets the early-stopping count."""
    s = loop.state
    if not (s["step"] % eval_every == 0 or s["step"] == loop.total):
        return None
    val_loss = loop.validate()
    if val_loss < s["best_val"]:
        s["best_val"], s["best_step"], s["bad_evals"] = val_loss, s["step"], 0
        loop.best = trainable(loop.model)
    else:
        s["bad_evals"] += 1
    return val_loss


def _tuned_thresholds(model, loop: Loop) -> list[float]:
    """Multilabel: each label's threshold, tuned on the validation rows with the best
    weights (`thresholds`); every process scores them all (FSDP gathers in each forward)."""
    probs = classifier_probs(
        model, [r[0] for r in loop.val], loop.pad_id, loop.device, loop.dtype, sigmoid=True
    )
    model.train()
    return tune_thresholds(probs, np.array([list(r[1]) for r in loop.val]))


def _finish(model, loop: Loop, out_dir: Path, resumed_from, stopped_early) -> TrainResult:
    s = loop.state
    final_val = next(h["val_loss"] for h in reversed(s["history"]) if h["val_loss"] is not None)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(loop.best[name])
    adapter_dir = out_dir / "adapter"
    weights = sharding.full_state(trainable(model)) if loop.par.sharded else None
    thresholds = _tuned_thresholds(model, loop) if loop.head.multilabel else None
    if loop.par.main:
        model.save_pretrained(str(adapter_dir), state_dict=weights)
        if thresholds is not None:
            write_thresholds(adapter_dir, loop.head.labels, thresholds)
    loop.par.barrier()  # the adapter is complete before any process returns
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return TrainResult(
        adapter_dir=adapter_dir,
        steps=s["step"],
        total_steps=loop.total,
        history=copy.deepcopy(s["history"]),
        initial_val_loss=s["initial_val"],
        final_val_loss=final_val,
        best_val_loss=s["best_val"],
        best_step=s["best_step"],
        stopped_early=stopped_early,
        resumed_from=resumed_from,
        optimizer_steps=loop.optimizer_steps(),
        skipped_checkpoints=list(loop.skipped),
        train_tokens=s["tokens"],
        seconds=s["seconds"],
        peak_rss_mb=max(loop.par.gather(peak_kib)) / 1024,
    )
