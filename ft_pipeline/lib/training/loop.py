"""The state of one training run: optimizer, schedule, batch position, checkpoints, and
the optimizer step itself (one process, or one of several: `distributed.Parallel`).

Checkpoints hold whole tensors whatever the strategy (`sharding.full_state`), so one
written by several processes, sharded or not, resumes on any number of them."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ft_pipeline.lib.model.batching import epoch_batches
from ft_pipeline.lib.model.heads import Row, head_for
from ft_pipeline.lib.model.lora import param_groups
from ft_pipeline.lib.model.modeling import Batch
from ft_pipeline.lib.training import checkpoints, sharding
from ft_pipeline.lib.training.distributed import Parallel
from ft_pipeline.recipe import Recipe

# (step about to be taken, micro-batch within it, row indices this process computed on)
RowsHook = Callable[[int, int, list[int]], None]


def total_steps(n_rows: int, recipe: Recipe) -> int:
    t = recipe.training
    per_epoch = math.ceil(math.ceil(n_rows / t.batch_size) / t.gradient_accumulation)
    return t.max_steps or max(1, math.ceil(per_epoch * t.epochs))


def trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class Loop:
    def __init__(
        self,
        model,
        recipe: Recipe,
        train: Sequence[Row],
        val: Sequence[Row],
        pad_id: int,
        dtype: torch.dtype | None,
        out_dir: Path,
        par: Parallel,
        root: sharding.LossRoot | None = None,
    ) -> None:
        from transformers import get_scheduler

        self.model, self.recipe, self.train, self.val = model, recipe, train, val
        self.head, self.root = head_for(recipe), root  # root: the FSDP root, when sharded
        self.pad_id, self.device, self.dtype, self.par = pad_id, par.device, dtype, par
        self.ckpt_dir = out_dir / "checkpoints"
        t = recipe.training
        self.total = total_steps(len(train), recipe)
        self.optimizer = torch.optim.AdamW(param_groups(model, recipe), weight_decay=t.weight_decay)
        # fp16 autocast underflows small gradients: scale the loss, unscale before clipping,
        # skip a step whose gradients overflowed. A pass-through for bf16 and fp32.
        self.scaler = torch.amp.GradScaler(par.device.type, enabled=dtype == torch.float16)
        self.scheduler = get_scheduler(
            t.lr_scheduler,
            self.optimizer,
            num_warmup_steps=math.ceil(t.warmup_ratio * self.total),
            num_training_steps=self.total,
        )
        self.lengths = [len(r[0]) for r in train]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.state: dict[str, Any] = dict(step=0, epoch=0, batch=0, history=[], bad_evals=0)
        self.state.update(best_val=math.inf, best_step=0, initial_val=math.nan, tokens=0)
        self.state["seconds"] = 0.0
        self.best = trainable(model)
        self.skipped: list[str] = []  # warnings about damaged checkpoints passed over

    def loss(self, batch: Batch, train: bool = False) -> tuple[torch.Tensor, int]:
        """The head's mean loss on a batch (through the FSDP root when sharded); `train`:
        the training objective (`Head.loss`)."""
        batch = batch.to(self.device)
        dtype = self.dtype
        on = dtype is not None
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=on):
            if self.root is not None:
                return self.root(batch, train)
            return self.head.loss(self.model, batch, train)

    def validate(self) -> float:
        """Validation loss over all rows; each process scores its share when several."""
        total, count = self.par.sum(self._val_totals())
        self.model.train()
        return total / max(1, count)

    @torch.no_grad()
    def _val_totals(self, batch_size: int = 32) -> tuple[float, int]:
        """(loss sum, targets) of this process's share, in length-sorted global batches of
        `batch_size` rows per process. Every process runs the same number of forward passes
        (under FSDP each one gathers weights): one without a share runs a row, unused."""
        self.model.eval()
        order = sorted(range(len(self.val)), key=lambda i: len(self.val[i][0]))
        total, count, size = 0.0, 0, batch_size * self.par.world
        for start in range(0, len(order), size):
            mine = self.par.shard([self.val[i] for i in order[start : start + size]])
            loss, n = self.loss(self.head.collate(mine or self.val[:1], self.pad_id))
            if mine:
                total, count = total + float(loss) * n, count + n
        return total, count

    def save(self) -> None:
        """Rank 0 writes; every rank's RNG state goes in, so a resume is exact on each."""
        s = self.state
        rank_rng = self.par.gather(torch.get_rng_state())
        # Whole tensors, gathered by every rank alike when the weights are sharded.
        weights, best = sharding.full_state(trainable(self.model)), sharding.full_state(self.best)
        optimizer = sharding.full_state(self.optimizer.state_dict())
        if self.par.main:
            payload = {
                "trainable": weights,
                "best": best,
                "optimizer": optimizer,
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            }
            if self.par.active:
                payload["rank_rng"] = rank_rng
            checkpoints.save(self.ckpt_dir, s["step"], payload, s)
        self.par.barrier()  # a crash right after still leaves the checkpoint complete

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
        """Restore the newest checkpoint that verifies; None when there is none.

        Rank 0 looks first (and sets damaged ones aside), then the others load the same one.
        """
        if self.par.main:
            step = self._resume(warn)
        self.par.barrier()
        if not self.par.main:
            step = self._resume(lambda _: None)
        if len(set(self.par.gather(step))) != 1:
            raise RuntimeError("the training processes found different checkpoints to resume")
        return step

    def _resume(self, warn: Callable[[str], None]) -> int | None:
        def skip(message: str) -> None:
            self.skipped.append(message)
            warn(message)

        if (found := checkpoints.load_latest(self.ckpt_dir, self.check, skip)) is None:
            return None
        _, payload, meta = found
        named = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        with torch.no_grad():
            for name, p in named.items():
                p.copy_(sharding.like(payload["trainable"][name], p))
        self.best = {n: sharding.like(t, named[n]) for n, t in payload["best"].items()}
        self.optimizer.load_state_dict(
            sharding.optimizer_state_like(payload["optimizer"], self.optimizer)
        )
        self.scheduler.load_state_dict(payload["scheduler"])
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        rank_rng = payload.get("rank_rng") or []
        same_world = self.par.active and len(rank_rng) == self.par.world
        torch.set_rng_state(rank_rng[self.par.rank] if same_world else payload["rng"])
        if payload.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        self.state = meta
        return meta["step"]

    def optimizer_steps(self) -> int:
        """optimizer.step() calls behind the weights, as AdamW counts them (resumes included)."""
        steps = [int(v["step"]) for v in self.optimizer.state.values() if "step" in v]
        return max(steps, default=0)

    def micro_batches(self) -> Iterator[tuple[int, int, list[int]]]:
        """(epoch, batch index, rows) from the saved position onwards, forever."""
        t = self.recipe.training
        epoch, skip = self.state["epoch"], self.state["batch"]
        while True:
            batches = epoch_batches(self.lengths, t.batch_size, t.seed, epoch)
            for i in range(skip, len(batches)):
                yield epoch, i, batches[i]
            epoch, skip = epoch + 1, 0

    def accumulate(self, batches, on_rows: RowsHook | None = None) -> tuple[float, int]:
        """Forward and backward over one step's micro-batches; (mean loss, tokens), summed
        over processes, with the gradients summed too (ready for the optimizer).

        Each process weighs its share's mean loss by its share of the batch's targets, so
        the sum is the loss (and gradient) of the whole batch, as one process computes it.
        """
        t, s, head, par = self.recipe.training, self.state, self.head, self.par
        weighted, tokens = 0.0, 0
        for micro in range(t.gradient_accumulation):
            epoch, index, rows = next(batches)
            mine = par.shard(rows)
            if on_rows:
                on_rows(s["step"] + 1, micro, mine)
            s["epoch"], s["batch"] = epoch, index + 1
            # A short last batch can leave a process without rows. Under DDP it sits the
            # micro-batch out; under FSDP it runs one row with zero weight, because every
            # process must enter each layer's gather and reduce-scatter.
            if not mine and not par.sharded:
                continue
            share = 1.0
            if par.active:
                share = head.n_targets([self.train[i] for i in mine]) / head.n_targets(
                    [self.train[i] for i in rows]
                )
            batch = head.collate([self.train[i] for i in mine or rows[:1]], self.pad_id)
            sharding.sync_gradients(self.root, micro == t.gradient_accumulation - 1)
            loss, _ = self.loss(batch, train=True)
            scaled = loss * share if par.active else loss
            self.scaler.scale(scaled / t.gradient_accumulation).backward()
            weighted += loss.detach().item() * share
            tokens += batch.n_tokens if mine else 0
        par.sum_grads(self.params)
        weighted, tokens = par.sum([weighted, tokens])
        return weighted / t.gradient_accumulation, int(tokens)
