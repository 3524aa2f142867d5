"""The LoRA training loop: answer-only loss, checkpoints, exact resume, early stopping.

Design choices, each for a measured reason (see bench/):
- the LM head runs only at answer positions (`modeling.answer_loss`); a classifier head
  (`heads.Head`) trains on cross-entropy over labels instead;
- dynamic padding with length-grouped batches (`batching.epoch_batches`);
- bf16 autocast where the hardware has it, fp32 master weights for the LoRA parameters;
- the batch order is a pure function of the seed, and checkpoints hold the optimizer,
  scheduler and RNG state, so a resumed run continues exactly where it stopped;
- checkpoints hold tensors and plain values only (loaded with `weights_only=True`), and a
  damaged newest checkpoint is skipped, with a warning, for the one before it.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ft_pipeline.lib import checkpoints
from ft_pipeline.lib.batching import epoch_batches
from ft_pipeline.lib.heads import Row, head_for, mean_loss
from ft_pipeline.lib.lora import param_groups, peft_config
from ft_pipeline.recipe import Recipe

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

    @property
    def tokens_per_s(self) -> float:
        return self.train_tokens / self.seconds if self.seconds else 0.0


def total_steps(n_rows: int, recipe: Recipe) -> int:
    t = recipe.training
    per_epoch = math.ceil(math.ceil(n_rows / t.batch_size) / t.gradient_accumulation)
    return t.max_steps or max(1, math.ceil(per_epoch * t.epochs))


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class _Loop:
    def __init__(self, model, recipe, train, val, pad_id, device, dtype, out_dir) -> None:
        from transformers import get_scheduler

        self.model, self.recipe, self.train, self.val = model, recipe, train, val
        self.head = head_for(recipe)
        self.pad_id, self.device, self.dtype = pad_id, device, dtype
        self.ckpt_dir = out_dir / "checkpoints"
        t = recipe.training
        self.total = total_steps(len(train), recipe)
        self.optimizer = torch.optim.AdamW(param_groups(model, recipe), weight_decay=0.0)
        self.scheduler = get_scheduler(
            t.lr_scheduler,
            self.optimizer,
            num_warmup_steps=math.ceil(t.warmup_ratio * self.total),
            num_training_steps=self.total,
        )
        self.lengths = [len(r[0]) for r in train]
        self.state: dict[str, Any] = dict(step=0, epoch=0, batch=0, history=[], bad_evals=0)
        self.state.update(best_val=math.inf, best_step=0, initial_val=math.nan, tokens=0)
        self.state["seconds"] = 0.0
        self.best = _trainable(model)
        self.skipped: list[str] = []  # warnings about damaged checkpoints passed over

    def validate(self) -> float:
        loss = mean_loss(self.head, self.model, self.val, self.pad_id, self.device, self.dtype)
        self.model.train()
        return loss

    def save(self) -> None:
        s = self.state
        payload = {
            "trainable": _trainable(self.model),
            "best": self.best,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        checkpoints.save(self.ckpt_dir, s["step"], payload, s)

    def check(self, payload: dict[str, Any], meta: dict[str, Any]) -> None:
        """Raise CorruptCheckpoint unless the payload fits this model (before touching it)."""
        shapes = {n: p.shape for n, p in self.model.named_parameters() if p.requires_grad}
        for part in ("trainable", "best"):
            got = payload.get(part)
            if not isinstance(got, dict) or {n: t.shape for n, t in got.items()} != shapes:
                raise checkpoints.CorruptCheckpoint(f"{part} weights do not fit the model")
        missing = {"optimizer", "scheduler", "rng"} - set(payload)
        missing |= {"step", "epoch", "batch", "history"} - set(meta)
        if missing:
            raise checkpoints.CorruptCheckpoint(f"missing {sorted(missing)}")

    def resume(self, warn: Callable[[str], None]) -> int | None:
        """Restore the newest checkpoint that verifies; None when there is none."""

        def skip(message: str) -> None:
            self.skipped.append(message)
            warn(message)

        if (found := checkpoints.load_latest(self.ckpt_dir, self.check, skip)) is None:
            return None
        _, payload, meta = found
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if p.requires_grad:
                    p.copy_(payload["trainable"][name])
        self.best = payload["best"]
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["rng"])
        if payload.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        self.state = meta
        return meta["step"]

    def optimizer_steps(self) -> int:
        """optimizer.step() calls behind the weights, as AdamW counts them (resumes included)."""
        steps = [int(v["step"]) for v in self.optimizer.state.values() if "step" in v]
        return max(steps, default=0)

    def micro_batches(self):
        """(epoch, batch index, rows) from the saved position onwards, forever."""
        t = self.recipe.training
        epoch, skip = self.state["epoch"], self.state["batch"]
        while True:
            batches = epoch_batches(self.lengths, t.batch_size, t.seed, epoch)
            for i in range(skip, len(batches)):
                yield epoch, i, batches[i]
            epoch, skip = epoch + 1, 0


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
) -> TrainResult:
    """Train (or resume) a LoRA adapter; save the best one to `out_dir/adapter`.

    Resumes from the newest checkpoint that verifies; each one skipped as damaged is
    reported to `on_warning` (default: this module's logger) by its path.
    """
    from peft import get_peft_model

    t = recipe.training
    torch.manual_seed(t.seed)
    model = get_peft_model(head_for(recipe).load(base_dir, device, pad_id), peft_config(recipe))
    loop = _Loop(model, recipe, train, val, pad_id, device, dtype, out_dir)
    resumed_from = loop.resume(on_warning or logger.warning)
    s = loop.state
    if resumed_from is None:
        s["initial_val"] = s["best_val"] = loop.validate()
        first = {"step": 0, "train_loss": None, "val_loss": s["initial_val"]}
        s["history"].append({**first, "lr": loop.scheduler.get_last_lr()[0]})
    model.train()
    batches = loop.micro_batches()
    steps_this_run, started = 0, time.monotonic()
    stopped_early = False
    while s["step"] < loop.total:
        step_start, losses, tokens = time.monotonic(), [], 0
        for _ in range(t.gradient_accumulation):
            epoch, index, rows = next(batches)
            batch = loop.head.collate([train[i] for i in rows], pad_id)
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                loss, _ = loop.head.loss(model, batch.to(device))
            (loss / t.gradient_accumulation).backward()
            losses.append(loss.detach().item())
            tokens += batch.n_tokens
            s["epoch"], s["batch"] = epoch, index + 1
        train_loss = sum(losses) / len(losses)
        if not math.isfinite(train_loss):
            raise TrainingDiverged(
                f"train loss became {train_loss} at step {s['step'] + 1}; "
                "lower training.learning_rate"
            )
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        lr = loop.scheduler.get_last_lr()[0]
        loop.optimizer.step()
        loop.scheduler.step()
        loop.optimizer.zero_grad(set_to_none=True)
        s["step"] += 1
        steps_this_run += 1
        elapsed = time.monotonic() - step_start
        s["tokens"] += tokens
        s["seconds"] += elapsed
        val_loss = None
        if s["step"] % t.eval_every == 0 or s["step"] == loop.total:
            val_loss = loop.validate()
            if val_loss < s["best_val"]:
                s["best_val"], s["best_step"], s["bad_evals"] = val_loss, s["step"], 0
                loop.best = _trainable(model)
            else:
                s["bad_evals"] += 1
        s["history"].append(
            {"step": s["step"], "train_loss": train_loss, "val_loss": val_loss, "lr": lr}
        )
        if on_log:
            eta = (time.monotonic() - started) / steps_this_run * (loop.total - s["step"])
            tok_s = tokens / elapsed if elapsed else 0.0
            on_log(StepLog(s["step"], loop.total, s["epoch"], train_loss, lr, tok_s, eta, val_loss))
        patience = t.early_stopping_patience
        stopped_early = bool(patience and s["bad_evals"] >= patience and s["step"] < loop.total)
        if s["step"] % t.checkpoint_every == 0 or stopped_early:
            loop.save()
        if fail_after_steps is not None and steps_this_run >= fail_after_steps:
            raise InjectedFault(f"fault injected after {steps_this_run} steps (step {s['step']})")
        if stopped_early:
            break

    return _finish(model, loop, out_dir, resumed_from, stopped_early)


def _finish(model, loop: _Loop, out_dir: Path, resumed_from, stopped_early) -> TrainResult:
    s = loop.state
    final_val = next(h["val_loss"] for h in reversed(s["history"]) if h["val_loss"] is not None)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(loop.best[name])
    adapter_dir = out_dir / "adapter"
    model.save_pretrained(str(adapter_dir))
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
    )
