"""Deploy an evaluated adapter: merge + verify, save the folder, register, promote."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ft_pipeline.lib import registry
from ft_pipeline.lib.deploy import merge_and_verify, model_card, write_model_folder
from ft_pipeline.lib.heads import head_for
from ft_pipeline.lib.models import load_tokenizer, resolve_base_model
from ft_pipeline.lib.registration import log_and_register
from ft_pipeline.lib.rendering import encode_prompts
from ft_pipeline.lib.state import StatePaths
from ft_pipeline.lib.tracking import Tracker, lineage_tags
from ft_pipeline.recipe import Recipe

KEY_TAG = "ft_pipeline.adapter_key"
EXAMPLES = [
    "the flight was delayed again and nobody told us anything",
    "thanks for the smooth check-in today",
    "is the 9am flight to Boston on schedule?",
]


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
) -> dict[str, Any]:
    """Register this adapter's merged model (once) and make it the champion."""
    import mlflow

    name = recipe.model_name
    folder = paths.deployments(recipe.name) / key / "model"
    existing = version_for_key(tracker, name, key)
    reused, diff = existing is not None, 0.0
    if existing is None:
        tokenizer = load_tokenizer(recipe.model.base, paths.models)
        base_dir = resolve_base_model(recipe.model.base, paths.models, weights=True)
        head = head_for(recipe)
        if head.name == "classifier":
            inputs = tokenizer(EXAMPLES, truncation=True, max_length=recipe.model.max_length)
            inputs = inputs["input_ids"]
        else:
            inputs = encode_prompts(EXAMPLES, recipe, tokenizer)
        log(f"merging adapter {key} into {recipe.model.base} ({head.name} head)")
        adapter_dir = paths.adapters(recipe.name) / key / "adapter"
        merged, diff = merge_and_verify(head, base_dir, adapter_dir, inputs, tokenizer.pad_token_id)
        card = model_card(recipe, result, info)
        write_model_folder(
            merged,
            tokenizer,
            recipe,
            card,
            folder,
            {"adapter_key": key, "data_version": info["data_version"]},
        )
        log(f"wrote {folder}; merged vs adapter max |diff| {diff:.2e}")
        metric = result["gate"]["metric"]
        metrics = {metric: result["models"]["fine-tuned"][metric]}
        mlflow.set_tracking_uri(tracking_uri)
        lineage = lineage_tags(recipe.name, recipe.content_hash(), info["data_version"], key)
        run_tags = {**tags, **lineage}
        with (
            tracker.run(f"deploy-{recipe.name}-{key}", run_tags) as run_id,
            mlflow.start_run(run_id=run_id),
        ):
            version = log_and_register(folder, name, {}, metrics, EXAMPLES)
        tracker.client.set_model_version_tag(name, version.version, KEY_TAG, key)
        existing = tracker.client.get_model_version(name, version.version)
        log(f"registered {name} version {existing.version}")
    previous = registry.promote(tracker.client, name, existing.version)
    log(f"champion of {name}: version {existing.version} (previous: {previous or 'none'})")
    return {
        "version": str(existing.version),
        "previous": previous,
        "reused": reused,
        "merge_diff": diff,
        "folder": str(folder),
    }
