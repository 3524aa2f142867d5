"""raw_data and cleaned_data: one partition per source file."""

import dagster as dg
import pandas as pd

from ft_pipeline.defs.partitions import source_partitions
from ft_pipeline.defs.resources import RecipeResource, StateResource
from ft_pipeline.lib.data import partition_store as store
from ft_pipeline.lib.data.cleaning import clean_frame
from ft_pipeline.lib.data.readers import ROW_COLUMN, ReadError, read_source, unmapped_columns
from ft_pipeline.lib.data.sources import SourceError, resolve
from ft_pipeline.lib.evaluation.report import markdown_table
from ft_pipeline.lib.state.paths import file_sha256
from ft_pipeline.recipe import ColumnMapping, RecipeError

PREVIEW_ROWS = 20
PREVIEW_CHARS = 200  # a quarantined 1 MB text must not become 1 MB of event-log metadata


@dg.asset(
    partitions_def=source_partitions,
    group_name="data",
    kinds={"pandas", "parquet"},
)
def raw_data(
    context: dg.AssetExecutionContext, state: StateResource, recipe: RecipeResource
) -> dg.MaterializeResult:
    """Every row of one source file, as read (all values as text), with its row number.

    The file's content hash is the partition's data version. An unreadable file fails
    this partition only, with an error that names the file and the reason.
    """
    key = context.partition_key
    paths = state.paths()
    try:
        r = recipe.load()
        source = resolve(key, r, recipe.base_dir(), recipe.landing(state))
        frame = read_source(source, max_mb=r.data.max_file_mb)
    except (RecipeError, SourceError, ReadError) as exc:
        raise dg.Failure(description=str(exc), metadata={"partition": key}) from None
    unmapped = unmapped_columns(frame, source.columns)
    if unmapped:
        context.log.info(f"{key}: columns the recipe does not map, kept in raw only: {unmapped}")
    sha = file_sha256(source.path)
    store.write_raw(paths, source, frame, sha)
    context.log.info(f"{key}: read {len(frame)} rows from {source.path}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(sha[:16]),
        metadata={
            "dagster/row_count": len(frame),
            "source_file": dg.MetadataValue.path(str(source.path)),
            "format": source.format,
            "encoding": source.encoding,
            "columns": list(map(str, frame.columns)),
            "unmapped_columns": unmapped,
            "sha256": sha,
            "path": dg.MetadataValue.path(str(paths.raw(key))),
        },
    )


def _shorten(value: object) -> object:
    if isinstance(value, str) and len(value) > PREVIEW_CHARS:
        return f"{value[:PREVIEW_CHARS]}... ({len(value)} chars)"
    return value


def _md(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(frame))


@dg.asset(
    partitions_def=source_partitions,
    deps=[raw_data],
    group_name="data",
    kinds={"pandas", "parquet"},
)
def cleaned_data(
    context: dg.AssetExecutionContext, state: StateResource, recipe: RecipeResource
) -> dg.MaterializeResult:
    """Normalised, validated, deduplicated rows of one source file.

    Every dropped row goes to the partition's quarantine table with its reason
    (unknown label, empty text, duplicate of row X, ...): rows in = kept + quarantined.
    """
    key = context.partition_key
    paths = state.paths()
    r = recipe.load()
    info = store.read_raw_info(paths, key)
    raw = pd.read_parquet(paths.raw(key))
    result = clean_frame(raw, r, ColumnMapping(**info["columns"]), key)
    version = store.clean_version(info, r.cleaning_hash())
    stats = {"data_version": version, **result.stats}
    store.write_clean(paths, key, result.kept, result.quarantined, stats, result.signatures)
    reasons = pd.DataFrame(list(result.reasons().items()), columns=["reason_code", "rows"])
    preview = result.quarantined[[ROW_COLUMN, "reason", "text_original"]].head(PREVIEW_ROWS)
    preview = preview.assign(text_original=preview["text_original"].map(_shorten))
    s = result.stats
    context.log.info(
        f"{key}: {s['rows_in']} rows in, {s['rows_kept']} kept, {s['rows_quarantined']} quarantined"
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(version),
        metadata={
            "dagster/row_count": s["rows_kept"],
            "rows_in": s["rows_in"],
            "rows_kept": s["rows_kept"],
            "rows_quarantined": s["rows_quarantined"],
            "unicode_repaired_rows": s.get("unicode_fixed", 0),
            "mojibake_stripped_rows": s.get("mojibake_stripped", 0),
            "quarantine_reasons": _md(reasons),
            "quarantine_preview": _md(preview),
            "label_distribution": _md(
                result.kept["label"].value_counts().rename_axis("label").reset_index()
            ),
            "path": dg.MetadataValue.path(str(paths.clean(key))),
            "quarantine_path": dg.MetadataValue.path(str(paths.quarantine(key))),
        },
    )
