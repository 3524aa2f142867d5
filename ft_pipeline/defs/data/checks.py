"""Blocking checks of raw_data and cleaned_data."""

import warnings
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from ft_pipeline.defs.data.assets import cleaned_data, raw_data
from ft_pipeline.defs.explained import explained
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
    csv = info["format"] == "csv"
    delimiter = csv_delimiter(Path(info["path"]), info.get("delimiter")) if csv else None
    problems = schema_problems(
        frame, recipe.load().task, ColumnMapping(**info["columns"]), delimiter
    )
    return explained(
        "raw_data_schema",
        not problems,
        measured=f"{info['path']}: " + ("; ".join(problems) or "readable, columns as mapped"),
        limit=f"the columns data.columns maps ({_mapped(info['columns'])}) and at least one row",
        fix="map the file's own column names in the recipe's data.columns (or rename them "
        "in the file); an empty file: deliver it again",
        look=f"{info['path']} (columns found: {list(frame.columns)})",
        metadata={"problems": problems, "rows": len(frame), "columns": list(frame.columns)},
    )


def _mapped(columns: dict) -> str:
    return ", ".join(f"{k}: {v!r}" for k, v in columns.items() if v)


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
ROWS_KEPT = "cleaned_data_rows_kept"
CLEAN_SPECS = [
    _spec("rows_accounted", "Rows in = rows kept + rows quarantined."),
    _spec("rows_kept", "At least one row survived cleaning (else each row's reason is shown)."),
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
    results = gate_results(state.paths(), context.partition_key, recipe.load())
    failed = [res.check_name for res in results if not res.passed]
    if failed:
        context.log.warning(f"{context.partition_key}: quality gate failed: {failed}")
    yield from results


def gate_results(paths, key: str, r) -> list[dg.AssetCheckResult]:
    """Every check of one clean partition, from what the state folder holds; the outcome is
    recorded beside the partition (what tokenized_dataset joins by)."""
    frame = pd.read_parquet(paths.clean(key))
    rows_in = store.read_raw_info(paths, key)["rows"]
    quarantined = pq.read_metadata(paths.quarantine(key)).num_rows
    accounted = rows_in == len(frame) + quarantined
    results = [
        explained(
            ROWS_ACCOUNTED,
            accounted,
            measured=f"{rows_in} rows in, {len(frame)} kept + {quarantined} quarantined",
            limit="rows in = kept + quarantined",
            fix="a bug in cleaning, not in your data (a row was lost or doubled): report it",
            look=f"{paths.clean(key)} and {paths.quarantine(key)}",
            metadata={
                "rows_in": rows_in,
                "rows_kept": len(frame),
                "rows_quarantined": quarantined,
            },
        ),
        _rows_kept(paths, key, rows_in, len(frame)),
    ]
    for name, (gate, _) in CLEAN_GATES.items():
        outcome = gate(frame, r)
        check_name = f"cleaned_data_{name}"
        if outcome is None:
            results.append(
                dg.AssetCheckResult(check_name=check_name, passed=True, metadata={"applies": False})
            )
            continue
        results.append(
            explained(
                check_name,
                outcome.success,
                measured=_unexpected(outcome.summary),
                limit=_expected(outcome.summary),
                fix=GATE_FIXES[name],
                look=f"{paths.clean(key)} (the clean rows) and the check's gx_result",
                metadata={"gx_result": dg.MetadataValue.json(outcome.summary)},
            )
        )
    info = store.read_clean_info(paths, key) or {}
    failed = [res.check_name for res in results if not res.passed]
    store.write_gate(paths, key, info.get("data_version", ""), failed)
    return results


def _rows_kept(paths, key: str, rows_in: int, kept: int) -> dg.AssetCheckResult:
    """Fails for a file whose every row was quarantined, naming the commonest reasons."""
    where = paths.quarantine(key)
    look = f"{where}: every row with its reason (cleaned_data's quarantine_preview in the UI)"
    limit = "at least one row kept"
    if kept or not rows_in:
        return explained(
            ROWS_KEPT,
            True,
            measured=f"{kept} of {rows_in} rows kept",
            limit=limit,
            fix="",
            look=look,
        )
    quarantine = pd.read_parquet(where, columns=["reason_code", "reason"])
    counts = quarantine["reason_code"].value_counts()
    example = quarantine.drop_duplicates("reason_code").set_index("reason_code")["reason"]
    top = "; ".join(f"{n} x {code} (e.g. {example[code]})" for code, n in counts.head(3).items())
    return explained(
        ROWS_KEPT,
        False,
        measured=f"{key}: all {rows_in} rows were quarantined: {top}",
        limit=limit,
        fix="fix the file, or the recipe where it is too strict for this data: labels and "
        "label_aliases (unknown labels), cleaning.min_chars / max_chars, "
        "cleaning.min_confidence, data.encoding",
        look=look,
        metadata={
            "rows_in": rows_in,
            "quarantine_reasons": dg.MetadataValue.json(counts.to_dict()),
        },
    )


GATE_FIXES = {
    "labels_in_set": "cleaning quarantines unknown labels, so this is a cleaning bug: report it",
    "text_not_null": "cleaning quarantines empty texts, so this is a cleaning bug: report it",
    "text_length_in_bounds": "cleaning quarantines texts outside cleaning.min_chars / "
    "max_chars, so this is a cleaning bug: report it",
    "texts_unique": "cleaning removes duplicates, so this is a cleaning bug: report it",
    "confidence_in_range": "cleaning quarantines confidences outside [0, 1]: a cleaning bug",
}


def _unexpected(summary: dict) -> str:
    """The failed expectations' counts and a few offending values, from a GX summary."""
    parts = []
    for r in summary.get("results", []):
        if r.get("success"):
            continue
        column = r.get("kwargs", {}).get("column", "?")
        n = r.get("unexpected_count", r.get("observed_value"))
        examples = r.get("partial_unexpected_list", [])[:3]
        parts.append(f"{r['expectation']} on {column!r}: {n} unexpected (e.g. {examples})")
    return "; ".join(parts) or "every expectation met"


def _expected(summary: dict) -> str:
    names = {r["expectation"]: r.get("kwargs", {}) for r in summary.get("results", [])}
    return "; ".join(
        f"{e}({', '.join(f'{k}={v}' for k, v in kw.items())})" for e, kw in names.items()
    )
