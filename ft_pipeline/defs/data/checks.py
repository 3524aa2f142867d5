"""Blocking checks of raw_data and cleaned_data."""

import warnings
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from ft_pipeline.defs.data.assets import cleaned_data, raw_data
from ft_pipeline.defs.partitions import source_partitions
from ft_pipeline.defs.resources import RecipeResource, StateResource
from ft_pipeline.lib.data import partition_store as store
from ft_pipeline.lib.data.gates import CLEAN_GATES
from ft_pipeline.lib.data.readers import csv_delimiter, schema_problems
from ft_pipeline.recipe import ColumnMapping

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    _raw_check = dg.asset_check(asset=raw_data, blocking=True, partitions_def=source_partitions)


@_raw_check
def raw_data_schema(
    context: dg.AssetCheckExecutionContext, state: StateResource, recipe: RecipeResource
) -> dg.AssetCheckResult:
    """The file was readable, has the columns the recipe maps, and at least one row."""
    paths = state.paths()
    key = context.partition_key
    info = store.read_raw_info(paths, key)
    frame = pd.read_parquet(paths.raw(key))
    delimiter = csv_delimiter(Path(info["path"])) if info["format"] == "csv" else None
    problems = schema_problems(
        frame, recipe.load().task, ColumnMapping(**info["columns"]), delimiter
    )
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(f"{info['path']}: {p}" for p in problems) or None,
        metadata={"problems": problems, "rows": len(frame), "columns": list(frame.columns)},
    )


def _spec(name: str, description: str) -> dg.AssetCheckSpec:
    # Partitioned check specs are marked preview in Dagster 1.13; they are what makes each
    # source file's gate its own result in the UI, so the warning is expected.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name=f"cleaned_data_{name}",
            asset=cleaned_data,
            blocking=True,
            description=description,
            partitions_def=source_partitions,
        )


ROWS_ACCOUNTED = "cleaned_data_rows_accounted"
CLEAN_SPECS = [
    _spec("rows_accounted", "Rows in = rows kept + rows quarantined."),
    *[_spec(name, text) for name, (_, text) in CLEAN_GATES.items()],
]


@dg.multi_asset_check(specs=CLEAN_SPECS, name="cleaned_data_quality")
def cleaned_data_quality(
    context: dg.AssetCheckExecutionContext, state: StateResource, recipe: RecipeResource
) -> Iterator[dg.AssetCheckResult]:
    """Great Expectations suites over one clean partition, one property per check.

    The outcome is also recorded beside the partition, so tokenized_dataset only joins
    partitions that passed.
    """
    paths = state.paths()
    key = context.partition_key
    r = recipe.load()
    frame = pd.read_parquet(paths.clean(key))
    rows_in = store.read_raw_info(paths, key)["rows"]
    quarantined = pq.read_metadata(paths.quarantine(key)).num_rows
    accounted = rows_in == len(frame) + quarantined
    failed = [] if accounted else [ROWS_ACCOUNTED]
    yield dg.AssetCheckResult(
        check_name=ROWS_ACCOUNTED,
        passed=accounted,
        metadata={"rows_in": rows_in, "rows_kept": len(frame), "rows_quarantined": quarantined},
    )
    for name, (gate, _) in CLEAN_GATES.items():
        outcome = gate(frame, r)
        check_name = f"cleaned_data_{name}"
        if outcome is None:
            yield dg.AssetCheckResult(
                check_name=check_name, passed=True, metadata={"applies": False}
            )
            continue
        if not outcome.success:
            failed.append(check_name)
        yield dg.AssetCheckResult(
            check_name=check_name,
            passed=outcome.success,
            metadata={"gx_result": dg.MetadataValue.json(outcome.summary)},
        )
    info = store.read_clean_info(paths, key) or {}
    store.write_gate(paths, key, info.get("data_version", ""), failed)
    if failed:
        context.log.warning(f"{key}: quality gate failed: {failed}")
