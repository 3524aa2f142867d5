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
import torch
from mlflow import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

from ft_pipeline.lib import modeling, registry
from ft_pipeline.lib.registration import log_and_register
from ft_pipeline.lib.serving import (
    MANIFEST,
    LabelModel,
    predict_folder,
    read_manifest,
)
from ft_pipeline.recipe import load_recipe, parse_recipe
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


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory):
    """A fresh SQLite tracking store and experiment; the previous URI is restored after."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    previous = tracking_utils._tracking_uri  # what set_tracking_uri last set (None: unset)
    with pytest.MonkeyPatch.context() as mp:
        # Snapshot the env vars set_tracking_uri / the experiment choice use; restored on exit.
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
            if var in os.environ:
                mp.setenv(var, os.environ[var])
            else:
                mp.delenv(var, raising=False)
        mlflow.set_tracking_uri(uri)
        try:
            experiment_id = MlflowClient(uri).create_experiment(
                "ft-pipeline-serving-test", artifact_location=(root / "artifacts").as_uri()
            )
            mp.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
            yield uri
        finally:
            mlflow.set_tracking_uri(previous)


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


# --- classifier head ---------------------------------------------------------------------


def _classifier_recipe(base: Path) -> dict:
    """A classification recipe dump for a classifier folder built on `base`."""
    recipe = parse_recipe(
        {
            "name": "fixture-classifier",
            "task": "classification",
            "labels": LABELS,
            "model": {"base": str(base), "max_length": CLASSIFIER_MAX_LENGTH},
        }
    )
    return recipe.model_dump(mode="json")


def build_classifier_folder(base: Path, target: Path, with_pad: bool = True) -> Path:
    """A classifier deployment folder: a sequence classifier over LABELS on a tiny base.

    `with_pad=False` saves a decoder whose tokenizer and config have no pad token, as many
    decoder checkpoints ship; serving must fall back to eos.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        pad_token_id=tokenizer.pad_token_id,
    )
    if not with_pad:
        tokenizer.pad_token = None
        model.config.pad_token_id = None
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    manifest = {"recipe": _classifier_recipe(base), "labels": LABELS, "head": "classifier"}
    (target / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return target


@pytest.fixture(scope="module", params=["encoder", "decoder", "decoder-no-pad"])
def classifier_folder(request: pytest.FixtureRequest, tmp_path_factory) -> Path:
    """Classifier deployment folders on the tiny BERT and the tiny Llama (with/without pad)."""
    base = request.getfixturevalue(
        "tiny_encoder_dir" if request.param == "encoder" else "tiny_model_dir"
    )
    target = tmp_path_factory.mktemp(f"classifier-{request.param}")
    return build_classifier_folder(base, target, with_pad=request.param != "decoder-no-pad")


def _direct_probs(folder: Path, texts: list[str]) -> np.ndarray:
    """Softmax of the classifier's logits computed by hand, the way serving must.

    Same device and autocast as serving (bf16 on CPUs that run it natively), so the two
    agree to float precision rather than to bf16 precision.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    device = modeling.pick_device("auto")
    dtype = modeling.pick_dtype("auto", device)
    model.to(device).eval()
    encoded = tokenizer(
        texts,
        truncation=True,
        max_length=CLASSIFIER_MAX_LENGTH,
        padding=True,
        return_tensors="pt",
    ).to(device)
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        logits = model(**encoded).logits
    return torch.softmax(logits.float(), dim=-1).cpu().numpy()


def test_classifier_predict_folder(classifier_folder: Path) -> None:
    texts = [*TEXTS, LONG_TEXT]
    out = predict_folder(classifier_folder, texts)
    assert list(out.columns) == ["label", *SCORE_COLUMNS]
    assert len(out) == len(texts)
    assert (out.dtypes[SCORE_COLUMNS] == np.float64).all()
    assert np.allclose(out[SCORE_COLUMNS].sum(axis=1), 1.0)
    assert (out["label"] == out[SCORE_COLUMNS].idxmax(axis=1).str.removeprefix("score_")).all()
    want = _direct_probs(classifier_folder, texts)
    assert np.allclose(out[SCORE_COLUMNS].to_numpy(), want, atol=1e-5)
    assert list(out["label"]) == [LABELS[i] for i in want.argmax(axis=1)]


def test_classifier_truncates_long_text(classifier_folder: Path) -> None:
    """A long text scores like its first max_length tokens (the classifier never sees more)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(classifier_folder)
    assert len(tokenizer(LONG_TEXT)["input_ids"]) > CLASSIFIER_MAX_LENGTH
    out = predict_folder(classifier_folder, [LONG_TEXT, LONG_TEXT + " awful rude gate"])
    assert np.allclose(out[SCORE_COLUMNS].iloc[0], out[SCORE_COLUMNS].iloc[1], atol=1e-6)


def test_classifier_batches_match_single_rows(classifier_folder: Path) -> None:
    """More rows than one batch, padded together or alone: the same probabilities."""
    texts = [f"{t} {i}" for i in range(12) for t in TEXTS]  # 36 rows: two batches
    batched = predict_folder(classifier_folder, texts)
    model = LabelModel().load_folder(classifier_folder)
    single = pd.concat([model.predict(None, [t]) for t in texts], ignore_index=True)
    assert list(batched["label"]) == list(single["label"])
    assert np.allclose(batched[SCORE_COLUMNS], single[SCORE_COLUMNS], atol=1e-6)
    assert predict_folder(classifier_folder, []).columns.tolist() == ["label", *SCORE_COLUMNS]


def test_classifier_registered_model_matches_folder(classifier_folder: Path, tracking: str) -> None:
    name = f"ft-serving-{classifier_folder.name}"
    version = _register(classifier_folder, name, 0.5)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    got = loaded.predict(pd.DataFrame({"text": [*TEXTS, LONG_TEXT]}))
    want = predict_folder(classifier_folder, [*TEXTS, LONG_TEXT])
    assert list(got.columns) == ["label", *SCORE_COLUMNS]
    assert list(got["label"]) == list(want["label"])
    assert np.allclose(got[SCORE_COLUMNS].to_numpy(), want[SCORE_COLUMNS].to_numpy(), atol=1e-6)


def _write_manifest(folder: Path, manifest: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def test_manifest_rejects_unknown_head(tmp_path: Path) -> None:
    recipe = _classifier_recipe(tmp_path)
    folder = _write_manifest(tmp_path, {"recipe": recipe, "labels": LABELS, "head": "regressor"})
    with pytest.raises(ValueError, match=r"head 'regressor' is not supported.*'classifier'"):
        read_manifest(folder)
    with pytest.raises(ValueError, match="head 'regressor' is not supported"):
        predict_folder(folder, TEXTS)


def test_manifest_classifier_needs_classification(tmp_path: Path) -> None:
    recipe = {**_classifier_recipe(tmp_path), "task": "instruction", "labels": []}
    folder = _write_manifest(tmp_path, {"recipe": recipe, "labels": [], "head": "classifier"})
    with pytest.raises(ValueError, match="head 'classifier' needs task 'classification'"):
        read_manifest(folder)


def test_classifier_labels_must_match_manifest(classifier_folder: Path, tmp_path: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(classifier_folder, tmp_path / "copy"))
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    _write_manifest(folder, {**manifest, "labels": ["neutral", "negative", "positive"]})
    with pytest.raises(ValueError, match=r"id2label .* does not match the labels"):
        predict_folder(folder, TEXTS)
    _write_manifest(folder, {**manifest, "labels": ["negative", "positive"]})
    with pytest.raises(ValueError, match=r"3 outputs but .* lists 2 labels"):
        predict_folder(folder, TEXTS)
