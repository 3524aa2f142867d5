"""fine_tuned_adapter: LoRA on the base model, tracked in MLflow, reused by key."""

import math

import dagster as dg

from ft_pipeline.defs.conditions import downstream_condition
from ft_pipeline.defs.explained import explained
from ft_pipeline.defs.lineage import latest_adapter_key, partition_of
from ft_pipeline.defs.resources import (
    MlflowResource,
    RecipeResource,
    StateResource,
    TrainerResource,
    dagster_run_finished,
    run_tags,
)
from ft_pipeline.defs.stale_runs import owner_tags
from ft_pipeline.defs.training.assets import tokenized_dataset
from ft_pipeline.lib.training.keys import ADAPTER_KEY_COVERS, code_version


@dg.asset(
    deps=[tokenized_dataset],
    group_name="training",
    kinds={"pytorch", "huggingface", "mlflow"},
    pool="training",
    code_version=code_version(),
    retry_policy=dg.RetryPolicy(max_retries=1, delay=5),
    automation_condition=downstream_condition,
)
def fine_tuned_adapter(
    context: dg.AssetExecutionContext,
    state: StateResource,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    trainer: TrainerResource,
) -> dg.MaterializeResult:
    """A LoRA adapter trained on the answer tokens of the training split.

    Keyed by (data version, recipe, base model, code): an adapter with the same key is
    reused, not retrained. Checkpoints let a re-materialization resume after a crash.
    With `training.distributed` set to ddp it runs torchrun and streams the workers' output.
    """
    from ft_pipeline.lib.data.tokenized import load_tokenized
    from ft_pipeline.lib.training.job import fit_adapter

    # Which process holds the `training` slot: if it dies, the landing sensor (or the next
    # `ft-pipeline run`) fails this run and frees the slot (ft_pipeline.defs.stale_runs).
    context.instance.add_run_tags(context.run_id, owner_tags())
    r = recipe.load(partition_of(context))
    paths = state.paths()
    dataset, manifest = load_tokenized(paths.tokenized(r.dataset_name))
    tracker = mlflow.tracker(state, r)
    reaped = tracker.reap_stale_runs(dagster_run_finished(context.instance))
    if reaped:
        context.log.warning(f"marked {len(reaped)} stale MLflow run(s) KILLED: {reaped}")
    outcome = fit_adapter(
        paths,
        r,
        dataset,
        manifest,
        tracker,
        tags=run_tags(context),
        log=context.log.info,
        warn=context.log.warning,
        device=trainer.device,
        fail_after_steps=trainer.fail_after_steps,
    )
    info = outcome.info
    return dg.MaterializeResult(
        data_version=dg.DataVersion(outcome.key),
        metadata={
            "adapter_key": outcome.key,
            "reused": outcome.reused,
            "key_covers": ADAPTER_KEY_COVERS,
            "mlflow_run_id": info["mlflow_run_id"],
            "steps": info["steps"],
            "train_rows": info["train_rows"],
            "processes": info.get("processes", 1),
            "initial_val_loss": info["initial_val_loss"],
            "best_val_loss": info["best_val_loss"],
            "stopped_early": info["stopped_early"],
            "resumed_from_step": info["resumed_from"] if info["resumed_from"] is not None else -1,
            "optimizer_steps": info.get("optimizer_steps", -1),
            "skipped_checkpoints": len(info.get("skipped_checkpoints", [])),
            "tokens_per_s": float(info["tokens_per_s"]),
            "train_minutes": float(info["train_seconds"]) / 60,
            "train_cpu_minutes": float(info.get("cpu_seconds", 0.0)) / 60,
            "peak_rss_mb": float(info.get("peak_rss_mb", 0.0)),
            "path": dg.MetadataValue.path(str(outcome.adapter_dir)),
        },
    )


@dg.asset_check(asset=fine_tuned_adapter, blocking=True)
def fine_tuned_adapter_converged(
    context: dg.AssetCheckExecutionContext, state: StateResource, recipe: RecipeResource
) -> dg.AssetCheckResult:
    """Training converged: the kept adapter's validation loss is finite and below the start."""
    from ft_pipeline.lib.training.adapter_info import read_info

    r = recipe.load(partition_of(context))
    paths = state.paths()
    key = latest_adapter_key(context.instance, partition_of(context))
    info = read_info(paths.adapters(r.name) / key) or {}
    initial, best = info.get("initial_val_loss", math.nan), info.get("best_val_loss", math.nan)
    passed = math.isfinite(best) and math.isfinite(initial) and best < initial
    return explained(
        "fine_tuned_adapter_converged",
        passed,
        measured=f"best validation loss {best:.4f} against {initial:.4f} before training",
        limit="finite, and below the initial validation loss",
        fix="lower training.learning_rate (a loss that rose or went NaN), or train longer "
        "(training.max_steps / epochs); check the labels are learnable",
        look=f"the training curve in MLflow and {paths.adapters(r.name) / key}",
        metadata={"initial_val_loss": initial, "best_val_loss": best, "adapter_key": key},
    )
