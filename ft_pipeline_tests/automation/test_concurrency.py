"""Two triggers at once, on the real daemon: a burst of landed files plus the schedule.

`dagster dev` runs the project's workspace with a tiny-model recipe whose retraining cron
fires every minute. The test drops 8 files in one go and then only watches the instance:
every file must become exactly one partition, ingested and cleaned exactly once, with
several ingest runs at once but never more than the queue's limit; no run fails; no two
training-pool steps (training, evaluation) overlap; nothing reports "database is locked";
and the schedule's runs succeed alongside the sensor's.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ft_pipeline_tests.conftest import fixture_rows, write_recipe
from ft_pipeline_tests.dagster_dev import DagsterDev, dagster_dev, open_instance
from ft_pipeline_tests.training.test_assets import LORA, TRAINING

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("live")]

# Twice the run queue's limit (dagster.yaml: 4 runs at once): two full waves of concurrent
# ingests while the schedule fires, so the second wave queues and starts as the first ends.
# (More waves repeat the same path at several seconds of CPU per run.)
N_FILES = 8
MAX_CONCURRENT_RUNS = 4  # dagster.yaml: concurrency.runs.max_concurrent_runs
POOL_STEPS = ("fine_tuned_adapter", "evaluation_report")  # both in the `training` pool
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@pytest.fixture
def live(tmp_path: Path, tiny_model_dir: Path):
    recipe = write_recipe(
        tmp_path,
        tiny_model_dir,
        [],
        training=TRAINING,
        lora=LORA,
        # Quality is not under test here: the gate must not turn a scheduled run red.
        evaluation={"min_f1_gain": -1.0},
        automation={
            "min_new_rows": 60,
            "landing_interval_s": 2,
            "automation_interval_s": 3,
            "retrain_cron": "* * * * *",
        },
    )
    with dagster_dev(tmp_path, recipe) as server:
        yield server


def burst(folder: Path, n: int) -> list[str]:
    """n small valid files, each written under an ignored name, then renamed at once."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"burst-{i:02d}.csv" for i in range(n)]
    for i, name in enumerate(names):
        pd.DataFrame(fixture_rows(3, seed=100 + i)).to_csv(folder / f"{name}.tmp", index=False)
    for name in names:
        os.replace(folder / f"{name}.tmp", folder / name)
    return [f"incoming:{name}" for name in names]


def materializations(instance: dg.DagsterInstance, asset: str, partition: str) -> int:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]),
        limit=10,
    ).records
    return len(records)


def pool_intervals(instance: dg.DagsterInstance, runs) -> list[tuple[float, float, str]]:
    """(start, end, run id) of every training-pool step in these runs."""
    kinds = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
    }
    spans = []
    for run in runs:
        starts: dict[str, float] = {}
        for event in instance.all_logs(run.run_id, of_type=kinds):
            step = event.step_key or ""
            if step not in POOL_STEPS:
                continue
            if event.dagster_event_type == dg.DagsterEventType.STEP_START:
                starts[step] = event.timestamp
            elif step in starts:
                spans.append((starts.pop(step), event.timestamp, run.run_id))
    return sorted(spans)


def most_at_once(instance: dg.DagsterInstance, runs) -> int:
    """The largest number of these runs executing at the same moment."""
    edges = []
    for run in runs:
        stats = instance.get_run_stats(run.run_id)
        edges += [(stats.start_time, 1), (stats.end_time, -1)]
    in_flight = peak = 0
    for _, step in sorted(edges):
        in_flight += step
        peak = max(peak, in_flight)
    return peak


def settled(server: DagsterDev, instance: dg.DagsterInstance, keys: list[str]) -> bool:
    """All files cleaned, a scheduled run finished, and nothing queued or running."""
    cleaned = set(instance.get_materialized_partitions(dg.AssetKey("cleaned_data")))
    if not set(keys) <= cleaned:
        return False
    scheduled = instance.get_runs(dg.RunsFilter(tags={"dagster/schedule_name": "retrain_schedule"}))
    if not any(r.is_finished for r in scheduled):
        return False
    if instance.get_latest_materialization_event(dg.AssetKey("deployed_model")) is None:
        return False
    return not instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT))


def test_a_burst_of_8_files_and_the_schedule_at_once(live: DagsterDev):
    instance = open_instance(live)
    keys = burst(live.home / "incoming", N_FILES)
    live.wait_for(
        "all files ingested, a scheduled retrain done and the queue empty",
        lambda: settled(live, instance, keys),
        timeout=1500,
        every=5,
    )

    partitions = instance.get_dynamic_partitions("source_files")
    assert sorted(partitions) == sorted(keys)  # each file exactly one partition, no duplicate
    for key in keys:
        assert materializations(instance, "raw_data", key) == 1, key
        assert materializations(instance, "cleaned_data", key) == 1, key
        ingests = instance.get_runs(dg.RunsFilter(tags={"dagster/partition": key}))
        assert [r.status for r in ingests] == [dg.DagsterRunStatus.SUCCESS], key
    # The burst really ran concurrently, within the run queue's limit (dagster.yaml).
    ingest_runs = instance.get_runs(dg.RunsFilter(job_name="ingest_source_file"))
    assert 2 <= most_at_once(instance, ingest_runs) <= MAX_CONCURRENT_RUNS

    runs = instance.get_runs()
    failed = [
        (r.run_id, r.job_name, str(r.status))
        for r in runs
        if r.status != dg.DagsterRunStatus.SUCCESS
    ]
    assert not failed
    scheduled = [r for r in runs if r.tags.get("dagster/schedule_name") == "retrain_schedule"]
    assert scheduled and all(r.job_name == "retrain" for r in scheduled)

    spans = pool_intervals(instance, runs)
    assert len(spans) >= 2  # at least one training and one evaluation step ran
    for (_, end, run_a), (start, _, run_b) in itertools.pairwise(spans):
        assert start >= end, f"training-pool steps of runs {run_a} and {run_b} overlapped"

    locked = [
        e.message
        for r in runs
        for e in instance.all_logs(r.run_id)
        if "database is locked" in (e.message or "")
    ]
    assert not locked
    assert "database is locked" not in live.log.read_text(errors="replace")
