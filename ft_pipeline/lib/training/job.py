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

from datasets import DatasetDict

from ft_pipeline.lib.data.splits import sample_indices
from ft_pipeline.lib.data.tokenized import DATASET_DIR
from ft_pipeline.lib.model.base_models import load_tokenizer, resolve_base_model
from ft_pipeline.lib.model.heads import head_for, rows_for
from ft_pipeline.lib.model.modeling import pick_device, pick_dtype
from ft_pipeline.lib.state import atomic
from ft_pipeline.lib.state.paths import StatePaths
from ft_pipeline.lib.state.tracking import Tracker, flatten, lineage_tags
from ft_pipeline.lib.training.distributed import check_supported
from ft_pipeline.lib.training.keys import adapter_key, base_model_hash, code_version, training_hash
from ft_pipeline.lib.training.launch import train_in_workers
from ft_pipeline.lib.training.training import StepLog, train_adapter
from ft_pipeline.recipe import Recipe

INFO_FILE = "adapter.json"
HISTORY_FILE = "history.json"
WORKER_DIR = "workers"  # the job file for torchrun's processes, and the result they wrote


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


def read_info(folder: Path) -> dict[str, Any] | None:
    path = folder / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else None


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

    base_dir = resolve_base_model(recipe.model.base, paths.models, weights=True)
    pad_id = load_tokenizer(recipe.model.base, paths.models).pad_token_id
    train_rows, val_rows = train_indices(dataset, recipe), val_indices(dataset, recipe)
    train_ds, val_ds = dataset["train"].select(train_rows), dataset["validation"].select(val_rows)
    dev = pick_device(device)
    dtype = pick_dtype(recipe.training.precision, dev)
    spread = recipe.training.distributed
    check_supported(spread.strategy, dev)
    procs = f", {spread.strategy} on {spread.nproc} processes" if spread.nproc > 1 else ""
    log(f"training adapter {key} on {len(train_ds)} rows ({dev}, {dtype or 'fp32'}{procs})")
    run_tags = {
        **tags,
        **lineage_tags(recipe.name, recipe.content_hash(), manifest["data_version"], key),
    }
    with tracker.run(f"train-{recipe.name}-{key}", run_tags) as run_id:
        tracker.log_params(run_id, flatten(recipe.model_dump(mode="json"), "recipe."))
        tracker.log_params(
            run_id,
            {
                "train_rows": str(len(train_ds)),
                "val_rows": str(len(val_ds)),
                "device": str(dev),
                "autocast": str(dtype),
                "training_hash": training_hash(recipe),
                "strategy": spread.strategy,
                "processes": str(spread.nproc),
            },
        )
        for name, part in (("train", train_ds), ("validation", val_ds)):
            frame = part.select_columns(["text", "source", "source_row"]).to_pandas()
            tracker.log_dataset(
                run_id,
                frame,
                f"{recipe.name}-{name}",
                name,
                f"{manifest['data_version']}-{name}",
                str(paths.tokenized(recipe.name)),
            )

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

        if spread.strategy == "single":
            result = train_adapter(
                base_dir,
                rows_for(train_ds, head_for(recipe)),
                rows_for(val_ds, head_for(recipe)),
                recipe,
                folder,
                pad_id=pad_id,
                device=dev,
                dtype=dtype,
                on_log=on_log,
                fail_after_steps=fail_after_steps,
                on_warning=warn or log,
            )
        else:  # torchrun; this process keeps the MLflow run and logs what the workers print
            job = {
                "recipe": recipe.model_dump(mode="json"),
                "dataset": str(paths.tokenized(recipe.name) / DATASET_DIR),
                "train_rows": [int(i) for i in train_rows],
                "val_rows": [int(i) for i in val_rows],
                "base_dir": str(base_dir),
                "pad_id": pad_id,
                "out_dir": str(folder),
                "device": dev.type,
                "fail_after_steps": fail_after_steps,
            }
            result = train_in_workers(
                job, spread.nproc, folder / WORKER_DIR, log=log, warn=warn or log, on_log=on_log
            )
        if result.resumed_from is not None:
            log(f"resumed from checkpoint at step {result.resumed_from}")
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
        (folder / HISTORY_FILE).write_text(json.dumps(result.history))
        tracker.log_artifacts(run_id, result.adapter_dir, "adapter")
        info = {
            "key": key,
            "mlflow_run_id": run_id,
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
            "train_rows": len(train_ds),
            "val_rows": len(val_ds),
            "strategy": spread.strategy,
            "processes": spread.nproc,
            "tokens_per_s": result.tokens_per_s,
            "train_seconds": result.seconds,
            "peak_rss_mb": result.peak_rss_mb,  # the largest over the training processes
            "base_model": recipe.model.base,
            "base_dir": str(base_dir),
            "data_version": manifest["data_version"],
            "dataset_rows": manifest["rows_out"],
        }
        # The adapter counts as complete from here on.
        atomic.write_text(folder / INFO_FILE, json.dumps(info, indent=2))
    return AdapterOutcome(key, folder, False, info)


def history(folder: Path) -> list[dict[str, Any]]:
    path = folder / HISTORY_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def latest_adapter(paths: StatePaths, recipe: Recipe) -> dict[str, Any] | None:
    """The most recently completed adapter of this recipe (its adapter.json), if any."""
    infos = sorted(
        paths.adapters(recipe.name).glob(f"*/{INFO_FILE}"), key=lambda p: p.stat().st_mtime
    )
    return json.loads(infos[-1].read_text()) if infos else None


def retraining_due(manifest: dict[str, Any], latest: dict[str, Any] | None, min_new_rows: int):
    """(due, new rows, reason): automation retrains only once enough new rows arrived.

    No adapter yet, or the same data version as the latest adapter (key reuse, seconds), are
    always due; otherwise the dataset must have grown by `min_new_rows` rows.
    """
    if latest is None:
        return True, manifest["rows_out"], "no adapter trained yet"
    if latest["data_version"] == manifest["data_version"]:
        return True, 0, "same data as the latest adapter: it will be reused"
    new = manifest["rows_out"] - int(latest.get("dataset_rows", 0))
    if new >= min_new_rows:
        return True, new, f"{new} new rows since the latest adapter (minimum {min_new_rows})"
    return (
        False,
        new,
        f"only {new} new rows since the latest adapter; retraining waits for {min_new_rows}",
    )
