"""The PostgreSQL profile and its selection, and the MLflow server command (no server needed).

The end-to-end run on a real PostgreSQL server is scale/test_postgres.py.
"""

from __future__ import annotations

import pytest
import yaml

from ft_pipeline.lib.state.paths import PROJECT_ROOT, StatePaths, prepare_dagster_home
from ft_pipeline.lib.state.tracking_server import backend_store_uri, server_command
from ft_pipeline_tests.scale.test_executors import PG_ENV, validate_instance_file

PROFILE = PROJECT_ROOT / "dagster.postgres.yaml"


def test_postgres_profile_validates_and_matches_dagster_yaml(monkeypatch, tmp_path):
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    config = validate_instance_file(PROFILE, tmp_path)
    assert set(config["storage"]) == {"postgres"}
    written = PROFILE.read_text()
    assert "not-a-secret" not in written and "password:\n        env:" in written
    profile, base = (
        yaml.safe_load(written),
        yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text()),
    )
    assert {k: v for k, v in profile.items() if k != "storage"} == base


def test_dagster_config_env_selects_the_profile(monkeypatch, tmp_path):
    paths = StatePaths(tmp_path / "home")
    monkeypatch.delenv("FT_DAGSTER_CONFIG", raising=False)
    home = prepare_dagster_home(paths)
    assert (home / "dagster.yaml").read_text() == (PROJECT_ROOT / "dagster.yaml").read_text()

    monkeypatch.chdir(tmp_path)  # a relative name is found in the project too
    monkeypatch.setenv("FT_DAGSTER_CONFIG", "dagster.postgres.yaml")
    assert (prepare_dagster_home(paths) / "dagster.yaml").read_text() == PROFILE.read_text()

    monkeypatch.setenv("FT_DAGSTER_CONFIG", "dagster.postgress.yaml")
    with pytest.raises(FileNotFoundError, match=r"dagster\.postgress\.yaml"):
        prepare_dagster_home(paths)


def test_mlflow_server_command_keeps_the_password_out_of_the_uri(tmp_path):
    env = {**PG_ENV, "FT_MLFLOW_PG_DB": "tracking", "PATH": "/usr/bin"}
    argv, child = server_command(env, tmp_path / "mlartifacts", "127.0.0.1", 5055, workers=1)
    uri = argv[argv.index("--backend-store-uri") + 1]
    assert uri == "postgresql+psycopg2://ft@postgresql.internal:5432/tracking"
    assert "not-a-secret" not in " ".join(argv)
    assert child["PGPASSWORD"] == "not-a-secret"
    assert argv[argv.index("--default-artifact-root") + 1] == str(tmp_path / "mlartifacts")
    assert argv[-6:] == ["--host", "127.0.0.1", "--port", "5055", "--workers", "1"]

    with pytest.raises(ValueError, match="DAGSTER_PG_HOST"):
        backend_store_uri({"DAGSTER_PG_USER": "ft"})
