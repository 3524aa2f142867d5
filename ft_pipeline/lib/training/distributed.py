"""Data-parallel training on several processes: DDP or FSDP, over gloo on CPU, NCCL on CUDA.

`train_adapter` calls `join()`. Under `torchrun` or `accelerate launch` (WORLD_SIZE > 1 in
the environment) it joins the process group; otherwise it returns the one-process
`Parallel`, whose methods do nothing, so a single process trains exactly as before.

How the work is split, and why the result is the single-process one:
- every rank computes the same batch order (`batching.epoch_batches` is a pure function
  of the seed) and takes rows `rank::world` of each global batch: the ranks see disjoint
  rows whose union is the single-process batch, and the optimizer steps are the same;
- a rank weighs its shard's mean loss by its share of the batch's targets (answer tokens
  or rows), so the summed gradients are the gradient of the single-process batch mean;
- the trainable (LoRA) gradients are summed by one all-reduce per optimizer step, after
  gradient accumulation, as DDP would (LoRA's few parameters fit one flat buffer; no DDP
  wrapper, so no per-micro-batch hooks and a rank may hold no row of a small last batch);
- validation is split the same way and its (loss sum, target count) summed, so every rank
  gets the same value and takes the same early-stopping decision;
- rank 0 alone writes checkpoints (holding every rank's RNG state) and the adapter, and
  reports progress.

FSDP (`strategy: fsdp`) shares out batches the same way but shards the weights too
(`sharding`): there the gradients are reduce-scattered by FSDP instead of `sum_grads`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ft_pipeline.lib.model.modeling import pick_device

STRATEGIES = ("single", "ddp", "fsdp")
CPU = torch.device("cpu")


class UnsupportedStrategy(RuntimeError):
    """The recipe asks for a strategy this machine cannot run."""


def check_supported(strategy: str, device: torch.device) -> None:
    """Refuse what cannot run, before any process starts."""
    if strategy == "single":
        return
    if device.type == "cuda" and not dist.is_nccl_available():
        raise UnsupportedStrategy(f"{strategy} on CUDA needs NCCL, which this torch build lacks")
    if device.type == "cpu" and not dist.is_gloo_available():
        raise UnsupportedStrategy(f"{strategy} on CPU needs gloo, which this torch build lacks")
    if device.type not in ("cpu", "cuda"):
        raise UnsupportedStrategy(
            f"{strategy} runs on CPU (gloo) or CUDA (NCCL), not on {device.type}; "
            "set training.device or strategy: single"
        )


@dataclass
class Parallel:
    """This process's place among the training processes (rank 0 of 1 when alone)."""

    rank: int = 0
    world: int = 1
    device: torch.device = CPU
    owns_group: bool = False
    strategy: str = "ddp"  # how several processes share the work: ddp or fsdp

    @property
    def sharded(self) -> bool:
        """Weights sharded across processes (FSDP), not replicated."""
        return self.active and self.strategy == "fsdp"

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, rows: Sequence) -> list:
        """This rank's share of a batch: rows rank, rank + world, ... (balanced lengths,
        since a batch is length-grouped)."""
        return list(rows) if not self.active else list(rows[self.rank :: self.world])

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (float64, so counts stay exact)."""
        if not self.active:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def sum_grads(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum the gradients of `params` over ranks, in place (one all-reduce)."""
        if not self.active or self.sharded:  # FSDP reduce-scatters them itself
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            p.grad = flat[offset : offset + g.numel()].view_as(p).to(p.dtype)
            offset += g.numel()

    def broadcast_params(self, params: Sequence[torch.Tensor]) -> None:
        """Start every rank from rank 0's weights (they are seeded alike; this makes sure)."""
        if self.active:
            for p in params:
                dist.broadcast(p.data, src=0)

    def gather(self, obj):
        """Every rank's `obj`, in rank order."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def leave(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def launched_world() -> int:
    """WORLD_SIZE set by torchrun / accelerate launch (1 when started plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join(device: torch.device | str = "auto", strategy: str = "ddp") -> Parallel:
    """This process's `Parallel`: joins the process group when launched as one of several.

    `device` "auto" (or a device type) is resolved per rank: cuda:<LOCAL_RANK> on CUDA.
    `strategy` (the recipe's) chooses FSDP over DDP when there are several processes.
    """
    initialized = dist.is_available() and dist.is_initialized()
    if not initialized and launched_world() <= 1:
        return Parallel(device=device if isinstance(device, torch.device) else pick_device(device))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    kind = device.type if isinstance(device, torch.device) else pick_device(device).type
    resolved = torch.device(f"cuda:{local}") if kind == "cuda" else torch.device(kind)
    if kind == "cuda":
        torch.cuda.set_device(resolved)
    if not initialized:
        dist.init_process_group("nccl" if kind == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    # Several processes under a recipe saying `single` (a plain torchrun launch) means DDP.
    how = "fsdp" if strategy == "fsdp" else "ddp"
    return Parallel(rank, world, resolved, owns_group=not initialized, strategy=how)
