"""Deploy an evaluated adapter: merge + verify, save the folder, register, promote.

Each step leaves a state the next deployment can finish from, so a deployment killed at any
point (SIGKILL, power loss) never serves a half-written model:

1. the model folder is staged beside its target and renamed into place (`atomic`);
2. the folder is logged to MLflow, then registered as a version created with its adapter
   key and metric tags in one write;
3. the `champion` alias moves last (`registry.promote`).

Before it starts, a deployment marks runs of dead processes KILLED, marks their
half-uploaded logged models FAILED (deleting their partial artifacts) and removes temporary
folders left beside the model folder. A version already registered for the adapter key is
reused, so a deployment killed after registration only has to move the alias.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ft_pipeline.lib.data.rendering import encode_prompts
from ft_pipeline.lib.data.truncation import encode_texts
from ft_pipeline.lib.deployment import registry
from ft_pipeline.lib.deployment.merge import merge_and_verify, model_card, write_model_folder
from ft_pipeline.lib.deployment.registration import fail_stale_models, log_and_register
from ft_pipeline.lib.model.base_models import load_tokenizer, resolve_base_model
from ft_pipeline.lib.model.heads import head_for
from ft_pipeline.lib.model.thresholds import read_thresholds
from ft_pipeline.lib.state.atomic import clean_leftovers, crash_point
from ft_pipeline.lib.state.paths import StatePaths
from ft_pipeline.lib.state.tracking import Tracker, lineage_tags
from ft_pipeline.recipe import Recipe

KEY_TAG = "ft_pipeline.adapter_key"
URI_ENV = "MLFLOW_TRACKING_URI"
EXAMPLE_ROWS = 3  # test rows that check the merged model and are its input example


def example_inputs(paths: StatePaths, recipe: Recipe, n: int = EXAMPLE_ROWS) -> list[str]:
    """Model inputs taken from the recipe's own data: its first `n` test rows (validation or
    training rows if the test split is empty), as the served model takes them (the text, or
    for chat the conversation before the answer as a JSON list)."""
    from ft_pipeline.lib.data.tokenized import load_tokenized

    target = paths.tokenized(recipe.dataset_name)
    dataset, _ = load_tokenized(target)
    for split in ("test", "validation", "train"):
        if len(dataset[split]):
            rows = dataset[split].select(range(min(n, len(dataset[split]))))
            if recipe.task == "chat":
                return [json.dumps(json.loads(m)[:-1]) for m in rows["messages"]]
            return [str(t) for t in rows["text"]]
    raise ValueError(f"{target}: no rows in any split; materialize tokenized_dataset first")


@contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at `uri` for the block only.

    `mlflow.set_tracking_uri` also exports `MLFLOW_TRACKING_URI`, which `MlflowResource`
    reads: left set, it would send the next run in this process (another state folder) to
    this store. The previous URI and variable are put back after."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    previous, variable = utils._tracking_uri, os.environ.get(URI_ENV)
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        if variable is None:
            os.environ.pop(URI_ENV, None)
        else:
            os.environ[URI_ENV] = variable


def version_for_key(tracker: Tracker, name: str, key: str):
    """An already registered version of this adapter (re-materializing must not duplicate)."""
    found = tracker.client.search_model_versions(f"name = '{name}'")
    return next((v for v in found if (v.tags or {}).get(KEY_TAG) == key), None)


def deploy(
    paths: StatePaths,
    recipe: Recipe,
    key: str,
    info: dict[str, Any],
    result: dict[str, Any],
    tracker: Tracker,
    tracking_uri: str,
    *,
    tags: dict[str, str],
    log: Callable[[str], None],
    is_finished: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Register this adapter's merged model (once) and make it the champion.

    `is_finished(dagster_run_id)` lets the reaper also end MLflow runs of finished Dagster
    runs (see `Tracker.reap_stale_runs`)."""
    import mlflow

    name = recipe.model_name
    folder = paths.deployments(recipe.name) / key / "model"
    cleanup(paths, recipe, tracker, log, is_finished)
    existing = version_for_key(tracker, name, key)
    reused, diff = existing is not None, 0.0
    if existing is None:
        tokenizer = load_tokenizer(recipe.model.base, paths.models)
        base_dir = resolve_base_model(recipe.model.base, paths.models, weights=True)
        head = head_for(recipe)
        examples = example_inputs(paths, recipe)
        if head.name == "classifier":
            inputs, _ = encode_texts(examples, recipe, tokenizer)
        else:
            inputs = encode_prompts(examples, recipe, tokenizer)
        log(f"merging adapter {key} into {recipe.model.base} ({head.name} head)")
        adapter_dir = paths.adapters(recipe.name) / key / "adapter"
        merged, diff = merge_and_verify(head, base_dir, adapter_dir, inputs, tokenizer.pad_token_id)
        card = model_card(recipe, result, info)
        extra = {"adapter_key": key, "data_version": info["data_version"]}
        if head.multilabel:  # serving cuts each label where evaluation did
            extra["thresholds"] = read_thresholds(adapter_dir, recipe.labels)
        write_model_folder(merged, tokenizer, recipe, card, folder, extra)
        log(f"wrote {folder}; merged vs adapter max |diff| {diff:.2e}")
        crash_point("deploy.folder_written")
        metric = result["gate"]["metric"]
        metrics = {metric: result["models"]["fine-tuned"][metric]}
        lineage = lineage_tags(recipe.name, recipe.content_hash(), info["data_version"], key)
        run_tags = {**tags, **lineage}
        with (
            fluent_tracking_uri(tracking_uri),
            tracker.run(f"deploy-{recipe.name}-{key}", run_tags) as run_id,
            mlflow.start_run(run_id=run_id),
        ):
            existing = log_and_register(folder, name, {}, metrics, examples, {KEY_TAG: key})
            crash_point("deploy.registered")
        log(f"registered {name} version {existing.version}")
    previous = registry.promote(tracker.client, name, existing.version)
    crash_point("deploy.promoted")
    log(f"champion of {name}: version {existing.version} (previous: {previous or 'none'})")
    return {
        "version": str(existing.version),
        "previous": previous,
        "reused": reused,
        "merge_diff": diff,
        "folder": str(folder),
    }


def cleanup(
    paths: StatePaths,
    recipe: Recipe,
    tracker: Tracker,
    log: Callable[[str], None],
    is_finished: Callable[[str], bool] | None = None,
) -> None:
    """Finish what deployments killed earlier left behind (runs, logged models, folders)."""
    reaped = tracker.reap_stale_runs(is_finished)
    if reaped:
        log(f"marked {len(reaped)} stale MLflow run(s) KILLED: {reaped}")
    failed = fail_stale_models(tracker.client, tracker.experiment_id)
    if failed:
        log(f"marked {len(failed)} half-logged model(s) FAILED: {failed}")
    root = paths.deployments(recipe.name)
    for key_dir in sorted(root.iterdir()) if root.is_dir() else []:
        for path in clean_leftovers(key_dir / "model"):
            log(f"removed {path}, left by a deployment that was killed")
