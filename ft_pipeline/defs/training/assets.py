"""tokenized_dataset: all clean partitions joined, split and tokenized."""

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
    tokenizer = load_tokenizer(r.model.base, paths.models)
    _, manifest = tokenize_partitions(paths, r, frames, versions, excluded, tokenizer)
    target = paths.tokenized(r.name)
    rows, sizes = manifest["rows_out"], manifest["split_sizes"]
    context.log.info(f"tokenized {rows} rows ({sizes}) into {target}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(manifest["data_version"]),
        metadata=_metadata(manifest, target),
    )


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
        "token_length_percentiles": dg.MetadataValue.json(manifest["token_length"]),
        "partitions": dg.MetadataValue.json(manifest["partitions"]),
        "excluded_partitions": dg.MetadataValue.json(manifest["excluded"]),
        "path": dg.MetadataValue.path(str(target)),
    }
