"""Fit an adapter, or reuse the one trained from exactly the same inputs.

Glue between the tokenized dataset, the training loop and MLflow; the Dagster asset only
passes its logger and run id in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, DatasetDict

from ft_pipeline.lib.data.splits import sample_indices
from ft_pipeline.lib.data.tokenized import DATASET_DIR
from ft_pipeline.lib.model.base_models import load_tokenizer, resolve_base_model
from ft_pipeline.lib.model.heads import head_for, rows_for
from ft_pipeline.lib.model.modeling import pick_device, pick_dtype
from ft_pipeline.lib.state import atomic
from ft_pipeline.lib.state.paths import StatePaths
from ft_pipeline.lib.state.tracking import Tracker, flatten, lineage_tags
from ft_pipeline.lib.training.adapter_info import HISTORY_FILE, INFO_FILE, cpu_seconds, read_info
from ft_pipeline.lib.training.distributed import check_supported
from ft_pipeline.lib.training.keys import adapter_key, base_model_hash, code_version, training_hash
from ft_pipeline.lib.training.launch import train_in_workers
from ft_pipeline.lib.training.training import StepLog, TrainResult, train_adapter
from ft_pipeline.recipe import DistributedConfig, Recipe

WORKER_DIR = "workers"  # the job file for torchrun's processes, and the result they wrote


@dataclass
class _Inputs:
    """What one training run uses: base model, sampled rows, device and process spread."""

    base_dir: str
    pad_id: int
    train_rows: list[int]
    val_rows: list[int]
    train_ds: Dataset
    val_ds: Dataset
    device: torch.device
    dtype: torch.dtype | None
    spread: DistributedConfig


@dataclass
class AdapterOutcome:
    """Where the adapter is, whether it was reused, and its summary (adapter.json)."""

    key: str
    folder: Path
    reused: bool
    info: dict[str, Any]

    @property
    def adapter_dir(self) -> Path:
        return self.folder / "adapter"


def train_indices(dataset: DatasetDict, recipe: Recipe) -> list[int]:
    labels = dataset["train"]["label"] if recipe.task == "classification" else None
    n = len(dataset["train"])
    return sample_indices(n, recipe.training.max_train_rows, recipe.training.seed, labels)


def val_indices(dataset: DatasetDict, recipe: Recipe) -> list[int]:
    labels = dataset["validation"]["label"] if recipe.task == "classification" else None
    n = len(dataset["validation"])
    return sample_indices(n, recipe.training.max_val_rows, recipe.training.seed, labels)


def current_key(paths: StatePaths, recipe: Recipe, data_version: str) -> str:
    return adapter_key(data_version, recipe, base_model_hash(recipe.model.base), code_version())


def fit_adapter(
    paths: StatePaths,
    recipe: Recipe,
    dataset: DatasetDict,
    manifest: dict[str, Any],
    tracker: Tracker,
    *,
    tags: dict[str, str],
    log: Callable[[str], None],
    device: str = "auto",
    fail_after_steps: int | None = None,
    warn: Callable[[str], None] | None = None,
) -> AdapterOutcome:
    """Reuse the adapter for this key if complete; otherwise train (resuming) and track it.

    With `training.distributed.strategy: ddp` the training runs in torchrun's processes
    (`launch.train_in_workers`); this process still owns the MLflow run, fed by the step
    lines rank 0 prints, and writes adapter.json.

    `warn` receives a warning per damaged checkpoint skipped on resume (default: `log`).
    """
    key = current_key(paths, recipe, manifest["data_version"])
    folder = paths.adapters(recipe.name) / key
    if (info := read_info(folder)) is not None:
        log(f"reusing adapter {key}: same data, recipe, base model and code")
        return AdapterOutcome(key, folder, True, info)

    inputs = _prepare(paths, recipe, dataset, device)
    spread = inputs.spread
    procs = f", {spread.strategy} on {spread.nproc} processes" if spread.nproc > 1 else ""
    dev = f"{inputs.device}, {inputs.dtype or 'fp32'}{procs}"
    log(f"training adapter {key} on {len(inputs.train_ds)} rows ({dev})")
    run_tags = {
        **tags,
        **lineage_tags(recipe.name, recipe.content_hash(), manifest["data_version"], key),
    }
    with tracker.run(f"train-{recipe.name}-{key}", run_tags) as run_id:
        _log_inputs(tracker, run_id, paths, recipe, manifest, inputs)
        on_log = _step_logger(tracker, run_id, log)
        warn, cpu = warn or log, cpu_seconds()
        result = _train(paths, recipe, inputs, folder, on_log, log, warn, fail_after_steps)
        cpu = cpu_seconds() - cpu
        if result.resumed_from is not None:
            log(f"resumed from checkpoint at step {result.resumed_from}")
        _log_result(tracker, run_id, result)
        (folder / HISTORY_FILE).write_text(json.dumps(result.history))
        tracker.log_artifacts(run_id, result.adapter_dir, "adapter")
        info = {"key": key, "mlflow_run_id": run_id, **_summary(result, inputs), "cpu_seconds": cpu}
        info |= {
            "base_model": recipe.model.base,
            "base_dir": str(inputs.base_dir),
            "data_version": manifest["data_version"],
            "dataset_rows": manifest["rows_out"],
        }
        # The adapter counts as complete from here on.
        atomic.write_text(folder / INFO_FILE, json.dumps(info, indent=2))
    return AdapterOutcome(key, folder, False, info)


def _prepare(paths: StatePaths, recipe: Recipe, dataset: DatasetDict, device: str) -> _Inputs:
    """Resolve the base model and its pad token, sample the rows, pick device and dtype.

    Refuses a distributed strategy the device cannot run before anything starts."""
    base_dir = resolve_base_model(recipe.model.base, paths.models, weights=True)
    pad_id = load_tokenizer(recipe.model.base, paths.models).pad_token_id
    train_rows, val_rows = train_indices(dataset, recipe), val_indices(dataset, recipe)
    train_ds, val_ds = dataset["train"].select(train_rows), dataset["validation"].select(val_rows)
    dev = pick_device(device)
    dtype = pick_dtype(recipe.training.precision, dev)
    spread = recipe.training.distributed
    check_supported(spread.strategy, dev)
    return _Inputs(base_dir, pad_id, train_rows, val_rows, train_ds, val_ds, dev, dtype, spread)


def _log_inputs(
    tracker: Tracker,
    run_id: str,
    paths: StatePaths,
    recipe: Recipe,
    manifest: dict[str, Any],
    inputs: _Inputs,
) -> None:
    """Log the recipe, the run's shape and the sampled train/validation rows to MLflow."""
    tracker.log_params(run_id, flatten(recipe.model_dump(mode="json"), "recipe."))
    tracker.log_params(
        run_id,
        {
            "train_rows": str(len(inputs.train_ds)),
            "val_rows": str(len(inputs.val_ds)),
            "device": str(inputs.device),
            "autocast": str(inputs.dtype),
            "training_hash": training_hash(recipe),
            "strategy": inputs.spread.strategy,
            "processes": str(inputs.spread.nproc),
        },
    )
    for name, part in (("train", inputs.train_ds), ("validation", inputs.val_ds)):
        frame = part.select_columns(["text", "source", "source_row"]).to_pandas()
        tracker.log_dataset(
            run_id,
            frame,
            f"{recipe.name}-{name}",
            name,
            f"{manifest['data_version']}-{name}",
            str(paths.tokenized(recipe.dataset_name)),
        )


def _step_logger(
    tracker: Tracker, run_id: str, log: Callable[[str], None]
) -> Callable[[StepLog], None]:
    """The per-step callback: metrics to MLflow, one progress line to `log`."""

    def on_log(s: StepLog) -> None:
        tracker.log_metrics(
            run_id,
            {
                "train_loss": s.train_loss,
                "lr": s.lr,
                "tokens_per_s": s.tokens_per_s,
                "val_loss": s.val_loss,
                "grad_norm": s.grad_norm,
            },
            step=s.step,
        )
        val = f", val_loss {s.val_loss:.4f}" if s.val_loss is not None else ""
        log(
            f"step {s.step}/{s.total_steps} loss {s.train_loss:.4f}{val} "
            f"lr {s.lr:.2e} grad_norm {s.grad_norm or 0:.3f} "
            f"{s.tokens_per_s:.0f} tok/s ETA {s.eta_s / 60:.1f} min"
        )

    return on_log


def _train(
    paths: StatePaths,
    recipe: Recipe,
    inputs: _Inputs,
    folder: Path,
    on_log: Callable[[StepLog], None],
    log: Callable[[str], None],
    warn: Callable[[str], None],
    fail_after_steps: int | None,
) -> TrainResult:
    """Train in this process (`single`), or in torchrun's processes, which this one
    launches and whose step lines it logs (it keeps the MLflow run)."""
    if inputs.spread.strategy == "single":
        return train_adapter(
            inputs.base_dir,
            rows_for(inputs.train_ds, head_for(recipe)),
            rows_for(inputs.val_ds, head_for(recipe)),
            recipe,
            folder,
            pad_id=inputs.pad_id,
            device=inputs.device,
            dtype=inputs.dtype,
            on_log=on_log,
            fail_after_steps=fail_after_steps,
            on_warning=warn,
        )
    job = {
        "recipe": recipe.model_dump(mode="json"),
        "dataset": str(paths.tokenized(recipe.dataset_name) / DATASET_DIR),
        "train_rows": [int(i) for i in inputs.train_rows],
        "val_rows": [int(i) for i in inputs.val_rows],
        "base_dir": str(inputs.base_dir),
        "pad_id": inputs.pad_id,
        "out_dir": str(folder),
        "device": inputs.device.type,
        "fail_after_steps": fail_after_steps,
    }
    nproc = inputs.spread.nproc
    return train_in_workers(job, nproc, folder / WORKER_DIR, log=log, warn=warn, on_log=on_log)


def _log_result(tracker: Tracker, run_id: str, result: TrainResult) -> None:
    """Tag how the run resumed and log its summary metrics at its last step."""
    tracker.set_tags(
        run_id,
        {
            "ft_pipeline.resumed_from_step": str(result.resumed_from),
            "ft_pipeline.skipped_checkpoints": str(len(result.skipped_checkpoints)),
        },
    )
    tracker.log_metrics(
        run_id,
        {
            "best_val_loss": result.best_val_loss,
            "initial_val_loss": result.initial_val_loss,
            "train_tokens_per_s": result.tokens_per_s,
            "optimizer_steps": result.optimizer_steps,
            "train_peak_rss_mb": result.peak_rss_mb,
        },
        step=result.steps,
    )


def _summary(result: TrainResult, inputs: _Inputs) -> dict[str, Any]:
    """The training part of adapter.json: losses, steps, resume, rows and throughput."""
    return {
        "steps": result.steps,
        "total_steps": result.total_steps,
        "initial_val_loss": result.initial_val_loss,
        "final_val_loss": result.final_val_loss,
        "best_val_loss": result.best_val_loss,
        "best_step": result.best_step,
        "stopped_early": result.stopped_early,
        "resumed_from": result.resumed_from,
        "optimizer_steps": result.optimizer_steps,
        "skipped_checkpoints": result.skipped_checkpoints,
        "train_rows": len(inputs.train_ds),
        "val_rows": len(inputs.val_ds),
        "strategy": inputs.spread.strategy,
        "processes": inputs.spread.nproc,
        "tokens_per_s": result.tokens_per_s,
        "train_seconds": result.seconds,
        "peak_rss_mb": result.peak_rss_mb,  # the largest over the training processes
    }
