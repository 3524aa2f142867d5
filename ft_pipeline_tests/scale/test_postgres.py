"""The tiny-model pipeline end to end on PostgreSQL: Dagster's storage and MLflow's store.

A real PostgreSQL server (Debian's, on a loopback port with a temporary data directory) holds
two databases. Dagster's instance comes from `dagster.postgres.yaml` and MLflow runs as
`ft-pipeline mlflow-server` on loopback; both read the connection from the same environment
variables a user sets. The results are then read back from PostgreSQL itself.
"""

from __future__ import annotations

import os
import sys

import dagster as dg
import pytest
from mlflow.tracking._tracking_service import utils as tracking_utils

from ft_pipeline.lib.state.paths import PROJECT_ROOT, StatePaths, prepare_dagster_home
from ft_pipeline_tests.dagster_dev import free_port
from ft_pipeline_tests.postgres_server import (
    MISSING,
    postgres_bin_dir,
    postgres_server,
    process_group,
    wait_for_http,
)
from ft_pipeline_tests.training.test_assets import MODEL, ModelProject, _project

pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("live")]


@pytest.fixture
def pg():
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.fail(MISSING)
    with postgres_server(bin_dir) as server:
        server.create_database("dagster")
        server.create_database("mlflow")
        yield server


@pytest.fixture
def restore_tracking_uri():
    previous = tracking_utils._tracking_uri
    yield
    import mlflow

    mlflow.set_tracking_uri(previous)


def test_pipeline_end_to_end_on_postgres(
    pg, tmp_path, tiny_model_dir, monkeypatch, capsys, restore_tracking_uri
):
    from ft_pipeline import cli

    for name, value in pg.env("dagster").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FT_MLFLOW_PG_DB", "mlflow")
    monkeypatch.setenv("FT_DAGSTER_CONFIG", "dagster.postgres.yaml")
    for name in ("FT_HOME", "FT_RECIPE", "DAGSTER_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(name, "unused")  # cli.main sets them; restored after the test
        monkeypatch.delenv(name)
    _, recipe = _project(tmp_path, tiny_model_dir)
    home = tmp_path / "home"
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "ft_pipeline.cli", "--home", str(home), "--recipe"]
    command += [str(recipe), "mlflow-server", "--port", str(port), "--workers", "1"]
    log = tmp_path / "mlflow-server.log"
    with process_group(command, dict(os.environ), log, cwd=PROJECT_ROOT) as server:
        wait_for_http(f"{uri}/health", server, log)
        monkeypatch.setenv("FT_MLFLOW_TRACKING_URI", uri)
        dagster_home = prepare_dagster_home(StatePaths(home))
        assert "postgres_db" in (dagster_home / "dagster.yaml").read_text()
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            project = ModelProject(tmp_path, instance, recipe)
            assert project.mlflow.uri(project.state) == uri
            project.prepare_data()
            result = project.materialize(MODEL)
            checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
            assert result.success, checks
            run_ids = {r.run_id for r in instance.get_runs()}

        # The serving path reads the registry through the same server.
        base = ["--home", str(home), "--recipe", str(recipe)]
        capsys.readouterr()  # MLflow's "View run at http://..." lines
        assert cli.main([*base, "predict", "the gate was awful and late"]) == 0
        label = capsys.readouterr().out.strip().split("\t")[0]
        assert label in {"negative", "neutral", "positive"}

    # Dagster: runs, materializations and check evaluations are rows in PostgreSQL ...
    runs = dict(pg.query("dagster", "SELECT run_id, status FROM runs"))
    assert set(runs) == run_ids and len(runs) == 3  # data, tokenized, model
    assert set(runs.values()) == {"SUCCESS"}
    materialized = pg.query(
        "dagster",
        "SELECT DISTINCT asset_key FROM event_logs WHERE dagster_event_type = %s",
        ("ASSET_MATERIALIZATION",),
    )
    assert {key for (key,) in materialized} >= {
        f'["{a}"]' for a in ("raw_data", "cleaned_data", "tokenized_dataset", "deployed_model")
    }
    evaluations = pg.query(
        "dagster",
        "SELECT check_name, execution_status FROM asset_check_executions",
    )
    assert {"raw_data_schema", "fine_tuned_adapter_converged"} <= {n for n, _ in evaluations}
    assert ("evaluation_report_promotion_gate", "SUCCEEDED") in evaluations
    [(events,)] = pg.query(
        "dagster",
        "SELECT count(*) FROM event_logs WHERE dagster_event_type = %s",
        ("ASSET_CHECK_EVALUATION",),
    )
    assert events == len(evaluations)
    # ... and nothing went to SQLite under the state folder.
    assert not list(home.rglob("*.db")), list(home.rglob("*.db"))

    # MLflow: the runs, the registered model and its champion alias.
    statuses = pg.query(
        "mlflow",
        "SELECT r.status, t.value FROM runs r JOIN experiments e USING (experiment_id) "
        "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'dagster.run_id' "
        "WHERE e.name = 'ft_pipeline/fixture'",
    )
    assert statuses and {s for s, _ in statuses} == {"FINISHED"}
    assert {dagster_run for _, dagster_run in statuses} <= run_ids
    assert pg.query("mlflow", "SELECT name FROM registered_models") == [("ft-fixture",)]
    assert pg.query("mlflow", "SELECT name, alias, version FROM registered_model_aliases") == [
        ("ft-fixture", "champion", 1)
    ]
