"""Ingest files dropped into the landing folder: `ingest_job` and `landing_sensor`.

Landing convention: every supported file (`.csv`, `.tsv`, `.jsonl`, `.ndjson`, `.json`,
`.parquet`, `.pq`) directly in the landing folder (`<state>/incoming`, or the recipe's
`data.incoming_dir`) becomes the partition `incoming:<file name>` of `raw_data` and
`cleaned_data`. Write a file somewhere else, or under a name that starts with `.` or `_` or
ends in `.tmp`/`.part`/`.partial`/`.crdownload`, and rename it into place when it is complete
(a rename within one filesystem is atomic): a half-written file is never picked up. Other file
types, sub-folders and names Dagster cannot use as partition keys (containing `...` or control
characters) are ignored.

Each file version (its SHA-256) is ingested once: touching a file does nothing, rewriting it
with new bytes starts a new run, and the run key `<partition>@<sha256[:16]>` stops the same
version from running twice, even if the sensor cursor is lost. A deleted file is forgotten by
the sensor; its partition and materializations stay. An entry with a data-file name that
is a directory, or a symlink whose target is outside the landing folder, is never read: each
tick logs it with the reason and names it in the skip message.
"""

import dagster as dg

from ft_pipeline.defs.partitions import source_partitions
from ft_pipeline.defs.resources import RecipeResource, StateResource
from ft_pipeline.defs.stale_runs import recover_stale_runs
from ft_pipeline.lib.data import landing
from ft_pipeline.lib.data.sources import configured_keys

SHA_TAG = "ft_pipeline/file_sha256"

# An asset selection includes the checks of the selected assets, so the blocking checks of
# raw_data and cleaned_data run (and gate cleaned_data) in every ingest run.
ingest_job = dg.define_asset_job(
    "ingest_source_file",
    selection=dg.AssetSelection.assets("raw_data", "cleaned_data"),
    partitions_def=source_partitions,
    description="Read and clean one source file: raw_data, cleaned_data and their checks.",
)


def run_key(partition_key: str, sha256: str) -> str:
    """One run per file version: Dagster skips a run request whose run key was used before."""
    return f"{partition_key}@{sha256[:16]}"


def _landing_tick(
    context: dg.SensorEvaluationContext, state: StateResource, recipe: RecipeResource
) -> dg.SensorResult:
    """Start an ingest run for each new or changed file in the landing folder.

    Changes are detected by content hash (see `ft_pipeline.lib.data.landing`); new partition keys
    are added to `source_files` in the same tick. A tick with nothing to do still stores the
    cursor, so deleted or touched files are not looked at again. The recipe's own sources
    (`data.sources`) are registered as partitions too, without a run, so they can be
    materialized from the UI on a fresh state folder.
    """
    for run_id in recover_stale_runs(context.instance):
        context.log.warning(f"run {run_id}: its process is gone; marked failed, slots freed")
    folder = recipe.landing(state)
    known = set(context.instance.get_dynamic_partitions(source_partitions.name))
    # Keys only: a recipe source that is missing or unreadable fails its own runs, not the tick.
    unregistered = [k for k in configured_keys(recipe.load()) if k not in known]
    result = landing.scan(folder, landing.parse_cursor(context.cursor))
    cursor = landing.dump_cursor(result.cursor)
    for name in result.unreadable:
        context.log.warning(f"{folder / name}: cannot be read now; will retry next tick")
    for name in result.rejected:
        context.log.warning(f"{folder / name}: ignored, the name cannot be a partition key")
    for name, why in result.ignored.items():
        context.log.warning(f"{folder / name}: ignored, it {why}")

    if not result.changed:
        if result.folder_missing:
            reason = f"landing folder {folder} does not exist"
        else:
            reason = f"no new or changed files among {result.checked} checked in {folder}"
        if result.ignored:
            reason += "; ignored: " + "; ".join(f"{n} {w}" for n, w in result.ignored.items())
        return dg.SensorResult(
            skip_reason=dg.SkipReason(reason),
            cursor=cursor,
            dynamic_partitions_requests=_add(unregistered),
        )

    new_keys = unregistered + [f.key for f in result.changed if f.key not in known]
    run_requests = [
        dg.RunRequest(
            partition_key=f.key,
            run_key=run_key(f.key, f.sha256),
            tags={SHA_TAG: f.sha256},
        )
        for f in result.changed
    ]
    context.log.info(
        f"{len(run_requests)} file version(s) to ingest: "
        + ", ".join(r.partition_key or "" for r in run_requests)
    )
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=_add(new_keys),
        cursor=cursor,
    )


def _add(keys: list[str]) -> list[dg.AddDynamicPartitionsRequest]:
    return [source_partitions.build_add_request(list(dict.fromkeys(keys)))] if keys else []


def build_landing_sensor(interval_s: int = 15) -> dg.SensorDefinition:
    """The landing sensor, ticking every `interval_s` seconds (recipe `automation`)."""

    @dg.sensor(
        name="landing_sensor",
        job=ingest_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_s,
        description="Ingest new or changed files from the landing folder.",
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext, state: StateResource, recipe: RecipeResource
    ) -> dg.SensorResult:
        return _landing_tick(context, state, recipe)

    return landing_sensor


def build_automation_sensor(interval_s: int = 30) -> dg.AutomationConditionSensorDefinition:
    """Evaluates the assets' automation conditions; RUNNING by default so `make ui` is live."""
    return dg.AutomationConditionSensorDefinition(
        "automation_sensor",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_s,
    )


landing_sensor = build_landing_sensor()
automation_sensor = build_automation_sensor()

MODEL_ASSETS = ("fine_tuned_adapter", "evaluation_report", "deployed_model")

retrain_job = dg.define_asset_job("retrain", selection=dg.AssetSelection.assets(*MODEL_ASSETS))


def retrain_schedule(cron: str, variants: list[str] | None = None) -> dg.ScheduleDefinition:
    """Weekly (by default) retraining of the model assets. Unchanged inputs reuse the adapter
    by its key, so a quiet week costs seconds. A tick before any tokenized dataset exists
    (a fresh state folder, or the first files still being ingested) is skipped, not failed.

    With an experiment's `variants`, a tick requests each variant's training and evaluation
    (one run per partition, one at a time through the `training` pool); automation then
    compares them and deploys the winner once every variant is evaluated."""

    @dg.schedule(
        name="retrain_schedule",
        job=retrain_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def _retrain(context: dg.ScheduleEvaluationContext):
        key = dg.AssetKey("tokenized_dataset")
        if context.instance.get_latest_materialization_event(key) is None:
            return dg.SkipReason("tokenized_dataset has not been materialized yet")
        if not variants:
            return dg.RunRequest()
        per_variant = [dg.AssetKey(a) for a in MODEL_ASSETS[:2]]
        return [
            dg.RunRequest(
                partition_key=v,
                asset_selection=per_variant,
                run_key=f"{context.scheduled_execution_time}-{v}",  # one run per variant a tick
            )
            for v in variants
        ]

    return _retrain
