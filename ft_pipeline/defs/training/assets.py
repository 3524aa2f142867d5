"""tokenized_dataset: all clean partitions joined, split and tokenized."""

import hashlib
from pathlib import Path

import dagster as dg
import pandas as pd

from ft_pipeline.defs.conditions import tokenize_condition
from ft_pipeline.defs.data.assets import cleaned_data
from ft_pipeline.defs.partitions import source_partitions
from ft_pipeline.defs.resources import RecipeResource, StateResource
from ft_pipeline.lib.data import partition_store as store
from ft_pipeline.lib.evaluation.report import markdown_table


def _md_table(data: dict) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(pd.DataFrame(data).fillna(0), index=True))


@dg.asset(
    deps=[cleaned_data],
    group_name="training",
    kinds={"huggingface", "pandas"},
    automation_condition=tokenize_condition,
)
def tokenized_dataset(
    context: dg.AssetExecutionContext, state: StateResource, recipe: RecipeResource
) -> dg.MaterializeResult:
    """Train/validation/test splits rendered with the base model's chat template.

    Joins every clean partition that passed its quality gate, removes duplicates across
    partitions, splits by a seeded hash of each text (a row never changes split as data is
    added), and masks everything but the answer tokens. Each partition's signatures and
    tokens are cached, so a new file costs about its own rows.
    Partitions left out are listed in the metadata with the reason.
    """
    # Heavy libraries (transformers, datasets) load when a run needs them, not with the code
    # location: an ingest run never pays for them.
    from ft_pipeline.lib.data.tokenized import tokenize_partitions
    from ft_pipeline.lib.model.base_models import load_tokenizer

    paths = state.paths()
    r = recipe.load()
    keys = context.instance.get_dynamic_partitions(source_partitions.name)
    frames, versions, excluded = store.gated_partitions(paths, keys)
    for key, why in excluded.items():
        context.log.warning(f"tokenized_dataset leaves out partition {key!r}: {why}")
    if not frames:
        raise dg.Failure(
            description="no clean partition has passed its quality gate yet",
            metadata={"excluded": excluded},
        )
    context.log.info(f"joining {len(frames)} partitions: {sorted(frames)}")
    manifests = {}
    # An experiment whose variants tokenize differently (another base model, head or
    # max_length) gets one dataset per tokenization; the recipe's own always comes first.
    for name, each in datasets_of(r).items():
        tokenizer = load_tokenizer(each.model.base, paths.models)
        _, manifests[name] = tokenize_partitions(paths, each, frames, versions, excluded, tokenizer)
    manifest = manifests[r.dataset_name]
    target = paths.tokenized(r.dataset_name)
    rows, sizes = manifest["rows_out"], manifest["split_sizes"]
    context.log.info(f"tokenized {rows} rows ({sizes}) into {target}")
    metadata = _metadata(manifest, target)
    if len(manifests) > 1:
        metadata["datasets"] = dg.MetadataValue.json(
            {
                name: {"base": m["base_model"], "data_version": m["data_version"]}
                for name, m in manifests.items()
            }
        )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(_combined_version(manifests)), metadata=metadata
    )


def datasets_of(recipe) -> dict:
    """dataset name -> the recipe that tokenizes it: the recipe's own, then any variant's."""
    datasets = {recipe.dataset_name: recipe}
    for variant in recipe.variants():
        datasets.setdefault(variant.recipe.dataset_name, variant.recipe)
    return datasets


def _combined_version(manifests: dict) -> str:
    versions = [m["data_version"] for m in manifests.values()]
    if len(versions) == 1:
        return versions[0]
    return hashlib.sha256("|".join(versions).encode()).hexdigest()[:16]


def _metadata(manifest: dict, target: Path) -> dict:
    """The asset's metadata: row accounting, split summary, partitions in and out."""
    return {
        "dagster/row_count": manifest["rows_out"],
        "rows_in": manifest["rows_in"],
        "rows_dropped": manifest["rows_dropped"],
        "cross_partition_duplicates": manifest["cross_partition_duplicates"],
        "partition_cache_hits": manifest["partition_cache"]["hits"],
        "truncation_rate": float(manifest["truncation_rate"]),
        "stratified": manifest["stratified"],
        "split_sizes": dg.MetadataValue.json(manifest["split_sizes"]),
        "label_distribution": _md_table(manifest["label_distribution"]),
        # Before shortening (kept and too-long rows), beside max_length: what to set it to.
        "token_length_percentiles": dg.MetadataValue.json(manifest["token_length_percentiles"]),
        "kept_token_length": dg.MetadataValue.json(manifest["token_length"]),
        "partitions": dg.MetadataValue.json(manifest["partitions"]),
        "excluded_partitions": dg.MetadataValue.json(manifest["excluded"]),
        "path": dg.MetadataValue.path(str(target)),
    }
