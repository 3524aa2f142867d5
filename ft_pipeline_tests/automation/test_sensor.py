"""The landing-folder sensor: change detection by content hash, run keys, dynamic partitions."""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from ft_pipeline.defs.automation import SHA_TAG, ingest_job, landing_sensor
from ft_pipeline.defs.partitions import source_partitions
from ft_pipeline.defs.resources import RecipeResource, StateResource
from ft_pipeline.lib.state.paths import file_sha256
from ft_pipeline_tests.conftest import fixture_rows, write_csv, write_recipe


class Landing:
    """A temporary state folder, recipe and Dagster instance; runs sensor ticks."""

    def __init__(self, root: Path, instance: dg.DagsterInstance, register=True) -> None:
        self.instance = instance
        self.state = StateResource(root=str(root / "home"))
        recipe = write_recipe(root, root / "no-model", ["data/corpus.csv"])
        self.recipe = RecipeResource(path=str(recipe))
        if register:  # the recipe's own source, as the first tick registers it
            instance.add_dynamic_partitions(source_partitions.name, ["file:data/corpus.csv"])
        self.folder = self.state.paths().incoming
        self.cursor: str | None = None

    def context(self) -> dg.SensorEvaluationContext:
        return dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"state": self.state, "recipe": self.recipe},
        )

    def tick(self) -> dg.SensorResult:
        """One evaluation; keeps the returned cursor for the next tick, as the daemon does."""
        result = landing_sensor(self.context())
        assert isinstance(result, dg.SensorResult)
        assert result.cursor is not None
        self.cursor = result.cursor
        return result

    def write(self, name: str, seed: int = 0) -> Path:
        return write_csv(self.folder / name, fixture_rows(2, seed=seed))


@pytest.fixture
def site(tmp_path: Path):
    # An in-memory instance keeps dynamic partitions and is ~50x faster to create than
    # instance_for_test; the one test that needs a persistent instance makes its own.
    with dg.DagsterInstance.ephemeral() as instance:
        yield Landing(tmp_path, instance)


def _keys(result: dg.SensorResult) -> list[str]:
    return [r.partition_key for r in result.run_requests or []]


def _added(result: dg.SensorResult) -> list[str]:
    return [
        key
        for req in result.dynamic_partitions_requests or []
        if isinstance(req, dg.AddDynamicPartitionsRequest)
        for key in req.partition_keys
    ]


def _skipped(result: dg.SensorResult) -> str:
    assert not result.run_requests, _keys(result)
    assert result.skip_reason is not None
    return result.skip_reason.skip_message or ""


# --- the sensor ---------------------------------------------------------------------------


def test_new_csv_yields_one_run_and_a_partition_add(site: Landing):
    path = site.write("tweets.csv")
    sha = file_sha256(path)
    result = site.tick()
    [request] = result.run_requests
    assert request.partition_key == "incoming:tweets.csv"
    assert request.run_key == f"incoming:tweets.csv@{sha[:16]}"
    assert request.tags[SHA_TAG] == sha
    [add] = result.dynamic_partitions_requests
    assert isinstance(add, dg.AddDynamicPartitionsRequest)
    assert add.partitions_def_name == source_partitions.name == "source_files"
    assert list(add.partition_keys) == ["incoming:tweets.csv"]
    assert json.loads(site.cursor)["tweets.csv"]["sha256"] == sha


def test_recipe_sources_are_registered_once_without_runs(tmp_path: Path):
    """On a fresh state folder the recipe's sources appear in the UI, ready to materialize."""
    with dg.DagsterInstance.ephemeral() as instance:
        site = Landing(tmp_path, instance, register=False)
        result = site.tick()
        assert "0 checked" in _skipped(result)  # registered although nothing landed
        assert _added(result) == ["file:data/corpus.csv"]
        site.instance.add_dynamic_partitions(source_partitions.name, _added(result))
        assert _added(site.tick()) == []
        site.write("tweets.csv")
        assert _added(site.tick()) == ["incoming:tweets.csv"]


def test_second_tick_with_cursor_skips(site: Landing):
    site.write("tweets.csv")
    assert _keys(site.tick()) == ["incoming:tweets.csv"]
    message = _skipped(site.tick())
    assert "1 checked" in message
    assert _skipped(site.tick())  # and stays quiet


@pytest.mark.parametrize("name", ["x.csv.tmp", "_partial.csv", ".hidden.csv", "x.csv.part"])
def test_in_progress_names_are_ignored_until_renamed(site: Landing, name: str):
    tmp = site.write(name)
    assert "0 checked" in _skipped(site.tick())
    tmp.rename(site.folder / "x.csv")
    assert _keys(site.tick()) == ["incoming:x.csv"]


def test_touch_without_new_bytes_starts_nothing(site: Landing):
    path = site.write("tweets.csv")
    site.tick()
    before = json.loads(site.cursor)["tweets.csv"]
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    _skipped(site.tick())
    after = json.loads(site.cursor)["tweets.csv"]
    assert after["mtime_ns"] == before["mtime_ns"] + 5_000_000_000  # re-hashed once, stored
    assert after["sha256"] == before["sha256"]


def test_rewrite_with_new_bytes_yields_a_new_run_key(site: Landing):
    path = site.write("tweets.csv", seed=0)
    [first] = site.tick().run_requests
    site.instance.add_dynamic_partitions(source_partitions.name, ["incoming:tweets.csv"])
    site.write("tweets.csv", seed=1)
    result = site.tick()
    [second] = result.run_requests
    assert second.partition_key == first.partition_key == "incoming:tweets.csv"
    assert second.run_key != first.run_key
    assert second.run_key == f"incoming:tweets.csv@{file_sha256(path)[:16]}"
    assert _added(result) == []  # the partition exists already


def test_rewrite_keeping_size_and_mtime_is_not_rehashed(site: Landing):
    """The documented shortcut: same size and mtime means the stored hash is trusted."""
    path = site.write("tweets.csv")
    site.tick()
    st = path.stat()
    data = path.read_bytes()
    path.write_bytes(data.replace(b"the", b"THE"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    _skipped(site.tick())


def test_two_files_at_once_yield_two_requests(site: Landing):
    site.write("b.csv", seed=2)
    site.write("a.csv", seed=1)
    result = site.tick()
    assert _keys(result) == ["incoming:a.csv", "incoming:b.csv"]
    assert _added(result) == ["incoming:a.csv", "incoming:b.csv"]
    assert len({r.run_key for r in result.run_requests}) == 2


def test_known_partition_is_not_re_added(site: Landing):
    site.instance.add_dynamic_partitions(source_partitions.name, ["incoming:old.csv"])
    site.write("old.csv")
    site.write("new.csv", seed=1)
    result = site.tick()
    assert _keys(result) == ["incoming:new.csv", "incoming:old.csv"]
    assert _added(result) == ["incoming:new.csv"]


def test_only_known_partitions_means_no_add_request(site: Landing):
    site.instance.add_dynamic_partitions(source_partitions.name, ["incoming:old.csv"])
    site.write("old.csv")
    result = site.tick()
    assert _keys(result) == ["incoming:old.csv"]
    assert result.dynamic_partitions_requests == []


def test_unsupported_suffix_and_folders_are_ignored(site: Landing):
    (site.folder / "notes.txt").write_text("text,label\nhello,positive\n")
    (site.folder / "dir.csv").mkdir()
    assert "0 checked" in _skipped(site.tick())
    assert json.loads(site.cursor) == {}


def test_deleted_file_disappears_from_cursor(site: Landing):
    gone = site.write("gone.csv")
    site.write("kept.csv", seed=1)
    site.tick()
    assert set(json.loads(site.cursor)) == {"gone.csv", "kept.csv"}
    gone.unlink()
    message = _skipped(site.tick())
    assert "1 checked" in message
    assert set(json.loads(site.cursor)) == {"kept.csv"}


def test_lost_or_corrupt_cursor_re_reports_with_the_same_run_key(site: Landing):
    site.write("tweets.csv")
    [first] = site.tick().run_requests
    site.cursor = "not json"
    [again] = site.tick().run_requests
    assert again.run_key == first.run_key  # Dagster's run-key dedup keeps it from running twice


def test_missing_landing_folder_is_a_skip(tmp_path: Path):
    """A recipe's `data.incoming_dir` that does not exist (yet) is a skip, not an error."""
    recipe = write_recipe(
        tmp_path, tmp_path / "no-model", ["data/corpus.csv"], data={"incoming_dir": "drop"}
    )
    resources = {
        "state": StateResource(root=str(tmp_path / "home")),
        "recipe": RecipeResource(path=str(recipe)),
    }
    with dg.DagsterInstance.ephemeral() as instance:
        result = landing_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert "does not exist" in _skipped(result)
        write_csv(tmp_path / "drop" / "late.csv", fixture_rows(1))
        result = landing_sensor(
            dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor)
        )
    assert _keys(result) == ["incoming:late.csv"]


def test_sensor_definition_settings():
    assert landing_sensor.name == "landing_sensor"
    assert landing_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert landing_sensor.minimum_interval_seconds == 15
    assert landing_sensor.required_resource_keys == {"state", "recipe"}
    assert landing_sensor.job_name == ingest_job.name == "ingest_source_file"


def test_job_selects_data_assets_and_their_checks(tmp_path: Path):
    """In Definitions the job resolves with every check of raw_data and cleaned_data, and a
    tick's run requests validate against it (a partition key neither known nor added fails)."""
    from ft_pipeline.defs.data import assets as data_assets
    from ft_pipeline.defs.data import checks as data_checks

    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        site = Landing(tmp_path, instance)
        defs = dg.Definitions(
            assets=dg.load_assets_from_modules([data_assets]),
            asset_checks=dg.load_asset_checks_from_modules([data_checks]),
            jobs=[ingest_job],
            sensors=[landing_sensor],
            resources={"state": site.state, "recipe": site.recipe},
        )
        all_checks = defs.get_repository_def().asset_graph.asset_check_keys
        job = defs.resolve_job_def("ingest_source_file")
        assert job.partitions_def == source_partitions
        assert job.asset_layer.asset_graph.asset_check_keys == all_checks
        names = {k.name for k in all_checks}
        assert {"raw_data_schema", "cleaned_data_rows_accounted"} <= names

        site.write("tweets.csv")
        # Under test, evaluate_tick validates partition keys only with an instance_ref, and
        # takes resources from `resources`, not from `definitions` (the daemon passes both).
        context = dg.build_sensor_context(
            instance=instance,
            instance_ref=instance.get_ref(),
            definitions=defs,
            resources={"state": site.state, "recipe": site.recipe},
        )
        data = defs.resolve_sensor_def("landing_sensor").evaluate_tick(context)
    [request] = data.run_requests
    assert request.partition_key == "incoming:tweets.csv"
    assert request.tags["dagster/sensor_name"] == "landing_sensor"
    assert request.tags["dagster/partition"] == "incoming:tweets.csv"
    assert [list(r.partition_keys) for r in data.dynamic_partitions_requests] == [
        ["incoming:tweets.csv"]
    ]
