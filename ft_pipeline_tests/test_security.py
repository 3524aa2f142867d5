"""Security rules: safe YAML, no unpickling of outside data, no remote code by default,
servers on loopback unless told otherwise, and credentials only through the environment."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from ft_pipeline.defs.resources import MlflowResource, StateResource, checked_tracking_uri
from ft_pipeline.lib.state.paths import PROJECT_ROOT
from ft_pipeline.recipe import RecipeError, load_recipe

SOURCES = sorted((PROJECT_ROOT / "ft_pipeline").rglob("*.py"))


def test_recipe_yaml_with_a_python_tag_is_refused_and_nothing_runs(tmp_path: Path):
    marker = tmp_path / "pwned"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(
        "name: evil\ntask: classification\nlabels: [a, b]\n"
        f"model: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    with pytest.raises(RecipeError) as err:
        load_recipe(recipe)
    assert str(recipe) in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"yaml\.(unsafe_)?load\((?![^)]*SafeLoader)", "YAML must be read with yaml.safe_load"),
        (r"\bpickle\.loads?\(|\bdill\.loads?\(|joblib\.load\(", "no unpickling"),
        (r"torch\.load\((?![^)]*weights_only=True)", "torch.load needs weights_only=True"),
        (r"allow_pickle=True", "numpy files are read without pickle"),
        (r"trust_remote_code=True", "remote code only when a recipe asks for it"),
        (r"(?<![.\w])(eval|exec)\(", "no eval/exec"),
    ],
)
def test_source_never_deserialises_unsafely(pattern: str, why: str):
    found = [
        f"{path.relative_to(PROJECT_ROOT)}:{n}: {line.strip()}"
        for path in SOURCES
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(pattern, line) and not line.lstrip().startswith("#")
    ]
    assert not found, f"{why}:\n" + "\n".join(found)


@pytest.mark.parametrize("target", ["serve", "ui", "mlflow-ui", "mlflow-server"])
def test_servers_bind_to_loopback_unless_told_otherwise(target: str):
    def dry_run(*extra: str) -> str:
        out = subprocess.run(
            ["make", "-n", target, *extra], cwd=PROJECT_ROOT, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    hosts = re.findall(r"(?:-h|--host) (\S+)", dry_run())
    assert hosts and set(hosts) == {"127.0.0.1"}
    assert set(re.findall(r"(?:-h|--host) (\S+)", dry_run("BIND_HOST=0.0.0.0"))) == {"0.0.0.0"}


@pytest.mark.parametrize(
    "uri",
    [
        "https://alice:s3cret-token@mlflow.example.com",
        "https://s3cret-token@mlflow.example.com",
        "postgresql://mlflow:s3cret-token@db.example.com/mlflow",
    ],
)
def test_credentials_in_the_tracking_uri_are_refused_without_echoing_them(uri, monkeypatch):
    with pytest.raises(ValueError, match="MLFLOW_TRACKING_TOKEN") as err:
        checked_tracking_uri(uri)
    assert "s3cret-token" not in str(err.value)
    monkeypatch.setenv("FT_MLFLOW_TRACKING_URI", uri)
    with pytest.raises(ValueError, match="carries credentials"):
        MlflowResource().uri(StateResource(root="/tmp/unused"))


def test_tracking_uri_comes_from_the_environment_when_not_configured(monkeypatch, tmp_path):
    state = StateResource(root=str(tmp_path))
    monkeypatch.delenv("FT_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////somewhere/else.db")  # MLflow's own
    assert MlflowResource().uri(state) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("FT_MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert MlflowResource().uri(state) == "http://127.0.0.1:5000"
    configured = MlflowResource(tracking_uri="http://127.0.0.1:6000")
    assert configured.uri(state) == "http://127.0.0.1:6000"


def test_a_tracking_token_from_the_environment_is_never_logged(
    tmp_path, tiny_model_dir, monkeypatch
):
    """Train, evaluate and deploy with MLflow credentials in the environment; the token
    appears in no Dagster event, no MLflow param, tag or metric name, and no state file."""
    from mlflow.tracking import MlflowClient

    from ft_pipeline_tests.training.test_assets import MODEL, _project, model_project

    token = "tok-5f3a9c1e7d2b-never-log-me"
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", token)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _, recipe = _project(tmp_path, tiny_model_dir)
    with model_project(tmp_path, recipe) as project:
        assert project.materialize(MODEL).success
        instance = project.instance
        events = [str(e) for r in instance.get_runs() for e in instance.all_logs(r.run_id)]
    assert events and not [e for e in events if token in e]
    client = MlflowClient(project.mlflow.uri(project.state))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs
    for run in runs:
        assert token not in str(run.data.params) + str(run.data.tags) + str(run.data.metrics)
    readable = [
        p for p in (tmp_path / "home").rglob("*") if p.is_file() and p.stat().st_size < 2**20
    ]
    assert not [p for p in readable if token.encode() in p.read_bytes()]
