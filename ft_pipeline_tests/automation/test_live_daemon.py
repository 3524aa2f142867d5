"""End to end with the real daemon: a file dropped in the landing folder flows to deployment.

`dagster dev` runs the project's workspace with a tiny-model recipe and a temporary state
folder. Nothing is launched by the test: the landing sensor, declarative automation and
the run queue do all of it, and the test only watches the instance.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ft_pipeline_tests.conftest import fixture_rows, write_recipe
from ft_pipeline_tests.dagster_dev import DagsterDev, dagster_dev, open_instance
from ft_pipeline_tests.training.test_assets import LORA, TRAINING

pytestmark = [pytest.mark.live, pytest.mark.xdist_group("live")]

DOWNSTREAM = ("tokenized_dataset", "fine_tuned_adapter", "evaluation_report", "deployed_model")
TICKS_QUERY = """
query Ticks($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) {
  __typename ... on Sensor { sensorState { ticks(limit: 20) { timestamp status } } } } }
"""


def drop(folder: Path, name: str, frame: pd.DataFrame) -> None:
    """Write under an ignored name, then rename into place (the landing convention)."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{name}.tmp"
    frame.to_csv(partial, index=False)
    os.replace(partial, folder / name)


def materialized_partitions(instance: dg.DagsterInstance, asset: str) -> set[str]:
    return set(instance.get_materialized_partitions(dg.AssetKey(asset)))


def materialization_count(instance: dg.DagsterInstance, asset: str) -> int:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
    return len(records)


def runs_for(instance: dg.DagsterInstance, partition: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(tags={"dagster/partition": partition})))


def automation_ticks_after(server: DagsterDev, timestamp: float) -> int:
    selector = {
        "repositoryLocationName": "ft_pipeline.definitions",
        "repositoryName": "__repository__",
        "sensorName": "automation_sensor",
    }
    data = server.graphql(TICKS_QUERY, {"selector": selector})["data"]["sensorOrError"]
    ticks = data["sensorState"]["ticks"]
    return sum(1 for t in ticks if t["timestamp"] > timestamp and t["status"] != "STARTED")


@pytest.fixture
def live(tmp_path: Path, tiny_model_dir: Path):
    recipe = write_recipe(
        tmp_path,
        tiny_model_dir,
        [],  # no configured sources: everything arrives through the landing folder
        training=TRAINING,
        lora=LORA,
        automation={"min_new_rows": 20, "landing_interval_s": 2, "automation_interval_s": 3},
        # Automation is under test, not the gate: on a dozen test rows any model deploys.
        evaluation={"min_f1_gain": -1.0},
    )
    with dagster_dev(tmp_path, recipe) as server:
        yield server


def test_landing_file_flows_to_deployment_and_a_bad_file_stops_at_its_check(live: DagsterDev):
    instance = open_instance(live)
    landing = live.home / "incoming"

    drop(landing, "good.csv", pd.DataFrame(fixture_rows(40, seed=3)))
    good = "incoming:good.csv"
    live.wait_for(
        "the sensor to add the partition",
        lambda: good in instance.get_dynamic_partitions("source_files"),
        timeout=60,
    )
    [ingest] = live.wait_for(
        "the ingest run to finish",
        lambda: [r for r in runs_for(instance, good) if r.is_finished],
        timeout=180,
    )
    assert ingest.tags["dagster/sensor_name"] == "landing_sensor"
    assert ingest.status == dg.DagsterRunStatus.SUCCESS
    assert good in materialized_partitions(instance, "raw_data")
    assert good in materialized_partitions(instance, "cleaned_data")

    live.wait_for(
        "automation to deploy the model",
        lambda: instance.get_latest_materialization_event(dg.AssetKey("deployed_model")),
        timeout=600,
        every=5,
    )
    for asset in DOWNSTREAM:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        assert event is not None, asset
        run = instance.get_run_by_id(event.run_id)
        assert run.tags.get("dagster/from_automation_condition") == "true", (asset, run.tags)

    before = {a: materialization_count(instance, a) for a in DOWNSTREAM}
    bad = "incoming:bad.csv"
    drop(landing, "bad.csv", pd.DataFrame({"tweet": ["no label column here"] * 30}))
    failed = live.wait_for(
        "the bad file's ingest run to fail",
        lambda: [r for r in runs_for(instance, bad) if r.is_finished],
        timeout=180,
    )
    assert [r.status for r in failed] == [dg.DagsterRunStatus.FAILURE]  # and no run retry
    checks = [
        e.dagster_event.event_specific_data
        for e in instance.all_logs(
            failed[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
    ]
    schema = [c for c in checks if c.check_name == "raw_data_schema"]
    assert schema and schema[0].passed is False
    assert "label" in str(schema[0].metadata)
    assert bad not in materialized_partitions(instance, "cleaned_data")

    # Two full automation ticks after the failure: nothing downstream is requested.
    ended = instance.get_run_record_by_id(failed[0].run_id).end_time
    live.wait_for(
        "two automation ticks after the failed ingest",
        lambda: automation_ticks_after(live, ended) >= 2,
        timeout=120,
    )
    after = {a: materialization_count(instance, a) for a in DOWNSTREAM}
    assert after == before
    in_flight = instance.get_runs(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED])
    )
    assert not in_flight
