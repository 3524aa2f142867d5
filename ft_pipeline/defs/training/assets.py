"""tokenized_dataset: all clean partitions joined, split and tokenized."""

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
    from ft_pipeline.lib.data.partition_cache import PartitionCache
    from ft_pipeline.lib.data.tokenized import (
        build_tokenized,
        fingerprint,
        save_tokenized,
        split_summary,
    )
    from ft_pipeline.lib.model.base_models import load_tokenizer

    paths = state.paths()
    r = recipe.load()
    keys = context.instance.get_dynamic_partitions(source_partitions.name)
    frames, versions, excluded = {}, {}, {}
    for key in keys:
        gate = store.read_gate(paths, key)
        info = store.read_clean_info(paths, key)
        if gate is None or info is None:
            excluded[key] = "not cleaned and checked yet"
        elif not gate["passed"] or gate["data_version"] != info["data_version"]:
            excluded[key] = f"quality gate failed: {', '.join(gate['failed_checks']) or 'stale'}"
        else:
            frames[key] = pd.read_parquet(paths.clean(key))
            versions[key] = info["data_version"]
    for key, why in excluded.items():
        context.log.warning(f"tokenized_dataset leaves out partition {key!r}: {why}")
    if not frames:
        raise dg.Failure(
            description="no clean partition has passed its quality gate yet",
            metadata={"excluded": excluded},
        )
    context.log.info(f"joining {len(frames)} partitions: {sorted(frames)}")
    tokenizer = load_tokenizer(r.model.base, paths.models)
    cache = PartitionCache(paths.partition_cache(r.name), r.tokenization_hash())
    result = build_tokenized(frames, r, tokenizer, versions, cache)
    cache.prune()
    summary = split_summary(result.dataset, r.task)
    version = fingerprint(versions, r)
    manifest = {
        "data_version": version,
        "recipe": r.name,
        "recipe_hash": r.content_hash(),
        "base_model": r.model.base,
        "partitions": versions,
        "excluded": excluded,
        **result.stats,
        **summary,
    }
    target = paths.tokenized(r.name)
    save_tokenized(result, target, manifest)
    s = result.stats
    context.log.info(f"tokenized {s['rows_out']} rows ({summary['split_sizes']}) into {target}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "dagster/row_count": s["rows_out"],
            "rows_in": s["rows_in"],
            "rows_dropped": s["rows_dropped"],
            "cross_partition_duplicates": s["cross_partition_duplicates"],
            "partition_cache_hits": s["partition_cache"]["hits"],
            "truncation_rate": float(s["truncation_rate"]),
            "stratified": s["stratified"],
            "split_sizes": dg.MetadataValue.json(summary["split_sizes"]),
            "label_distribution": _md_table(summary["label_distribution"]),
            "token_length_percentiles": dg.MetadataValue.json(summary["token_length"]),
            "partitions": dg.MetadataValue.json(versions),
            "excluded_partitions": dg.MetadataValue.json(excluded),
            "path": dg.MetadataValue.path(str(target)),
        },
    )
