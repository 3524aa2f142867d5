"""Serving and registry: a tiny deployment folder registered in a throwaway SQLite MLflow,
loaded through the `champion` alias in-process and over HTTP from `mlflow models serve`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from ft_pipeline.lib.deployment import registry
from ft_pipeline.lib.deployment.registration import log_and_register
from ft_pipeline.lib.deployment.serving import (
    MANIFEST,
    LabelModel,
    predict_folder,
)
from ft_pipeline.recipe import load_recipe
from ft_pipeline_tests.conftest import LABELS, build_tiny_model, write_recipe

TEXTS = [
    "the great flight and friendly seat trip",
    "awful late and rude gate",
    "check the schedule update today",
]
SCORE_COLUMNS = [f"score_{label}" for label in LABELS]
SERVER_START_TIMEOUT_S = 120
CLASSIFIER_MAX_LENGTH = 32
# Far more than CLASSIFIER_MAX_LENGTH tokens: must be truncated, not rejected.
LONG_TEXT = " ".join(["great flight and friendly seat trip today"] * 40)


@pytest.fixture(scope="module")
def deployment_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-contained folder: tiny Llama + tokenizer + ft_pipeline.json."""
    folder = build_tiny_model(tmp_path_factory.mktemp("deployment"))
    recipe = load_recipe(write_recipe(tmp_path_factory.mktemp("recipe"), folder, []))
    manifest = {"recipe": recipe.model_dump(mode="json"), "labels": LABELS, "head": "lm"}
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def _register(folder: Path, name: str, macro_f1: float) -> str:
    with mlflow.start_run():
        version = log_and_register(
            folder, name, {"ft_pipeline.test": "1"}, {"macro_f1": macro_f1}, TEXTS[:2]
        )
    return str(version.version)


def test_predict_folder_shape(deployment_folder: Path) -> None:
    out = predict_folder(deployment_folder, TEXTS)
    assert list(out.columns) == ["label", *SCORE_COLUMNS]
    assert len(out) == len(TEXTS)
    assert np.allclose(out[SCORE_COLUMNS].sum(axis=1), 1.0)
    assert set(out["label"]) <= set(LABELS)
    assert (out["label"] == out[SCORE_COLUMNS].idxmax(axis=1).str.removeprefix("score_")).all()


def test_predict_rejects_bad_input(deployment_folder: Path) -> None:
    model = LabelModel().load_folder(deployment_folder)
    with pytest.raises(ValueError, match="no 'text' column"):
        model.predict(None, pd.DataFrame({"body": ["x"]}))
    with pytest.raises(ValueError, match=r"row 1: 'text' must be a string, got NoneType"):
        model.predict(None, pd.DataFrame({"text": ["fine", None]}, dtype=object))
    with pytest.raises(ValueError, match=r"row 0 \(index 'a'\).*got int"):
        model.predict(None, pd.DataFrame({"text": [3]}, index=["a"]))
    by_dict = model.predict(None, {"text": TEXTS})
    by_list = model.predict(None, TEXTS)
    pd.testing.assert_frame_equal(by_dict, by_list)


def test_registered_champion_matches_folder(deployment_folder: Path, tracking: str) -> None:
    client = MlflowClient(tracking)
    name = "ft-serving-inprocess"
    assert registry.champion(client, name) is None  # no such model yet
    version = _register(deployment_folder, name, 0.5)
    assert registry.champion(client, name) is None  # registered, not promoted
    assert registry.promote(client, name, version) is None
    assert registry.champion_metrics(client, name) == {"macro_f1": 0.5}

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    got = loaded.predict(pd.DataFrame({"text": TEXTS}))
    want = predict_folder(deployment_folder, TEXTS)
    assert list(got.columns) == ["label", *SCORE_COLUMNS]
    assert np.allclose(got[SCORE_COLUMNS].sum(axis=1), 1.0)
    assert set(got["label"]) <= set(LABELS)
    assert list(got["label"]) == list(want["label"])
    assert np.allclose(got[SCORE_COLUMNS].to_numpy(), want[SCORE_COLUMNS].to_numpy(), atol=1e-6)


def test_log_and_register_without_active_run(deployment_folder: Path, tracking: str) -> None:
    assert mlflow.active_run() is None
    version = log_and_register(deployment_folder, "ft-serving-norun", {"k": "v"}, {}, TEXTS[:1])
    assert mlflow.active_run() is None
    assert str(version.version) == "1"
    run = MlflowClient(tracking).get_run(version.run_id)
    assert run.data.tags["k"] == "v"


def test_promote_and_rollback_walk_the_chain(deployment_folder: Path, tracking: str) -> None:
    client = MlflowClient(tracking)
    name = "ft-serving-registry"
    versions = [_register(deployment_folder, name, f1) for f1 in (0.4, 0.5, 0.6)]
    assert versions == ["1", "2", "3"]
    with pytest.raises(registry.RegistryError, match="no 'champion' alias"):
        registry.rollback(client, name)

    previous = [registry.promote(client, name, v) for v in versions]
    assert previous == [None, "1", "2"]
    assert str(registry.champion(client, name).version) == "3"
    assert registry.champion_metrics(client, name) == {"macro_f1": 0.6}
    tags = client.get_model_version(name, "3").tags
    assert tags[registry.PREVIOUS_TAG] == "2"

    assert registry.rollback(client, name) == ("3", "2")
    assert registry.champion_metrics(client, name) == {"macro_f1": 0.5}
    assert registry.rollback(client, name) == ("2", "1")
    assert str(registry.champion(client, name).version) == "1"
    with pytest.raises(registry.RegistryError, match="version 1 has no previous champion"):
        registry.rollback(client, name)
    assert str(registry.champion(client, name).version) == "1"

    kept = sorted(str(mv.version) for mv in client.search_model_versions(f"name='{name}'"))
    assert kept == ["1", "2", "3"]
    # Promoting after a rollback records the version it replaces, not a stale one.
    assert registry.promote(client, name, "3") == "1"
    assert client.get_model_version(name, "3").tags[registry.PREVIOUS_TAG] == "1"
    assert registry.rollback(client, name) == ("3", "1")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_ping(base: str, server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow models serve exited early with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"mlflow models serve did not answer /ping within {timeout_s} s")


def test_http_server_matches_in_process(
    deployment_folder: Path, tracking: str, tmp_path: Path
) -> None:
    client = MlflowClient(tracking)
    name = "ft-serving-http"
    registry.promote(client, name, _register(deployment_folder, name, 0.7))
    want = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(
        pd.DataFrame({"text": TEXTS})
    )

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    # The server execs `uvicorn` by name, so the venv's bin must be on PATH.
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "PATH": path}
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [
            str(bin_dir / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{name}@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_ping(base, server, SERVER_START_TIMEOUT_S)
        body = json.dumps({"dataframe_records": [{"text": t} for t in TEXTS]}).encode()
        request = urllib.request.Request(
            f"{base}/invocations",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
    except BaseException:
        log.flush()
        print((tmp_path / "server.log").read_text(errors="replace")[-5000:])
        raise
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)
        log.close()

    assert set(payload) == {"predictions"}
    got = pd.DataFrame(payload["predictions"])
    assert list(got.columns) == ["label", *SCORE_COLUMNS]
    assert list(got["label"]) == list(want["label"])
    assert np.allclose(got[SCORE_COLUMNS].to_numpy(), want[SCORE_COLUMNS].to_numpy(), atol=1e-5)
