"""Registration: log a deployment folder as an MLflow pyfunc and register a version.

The model is logged first (its artifacts copied into the artifact store) and registered
after, in one step that creates the version with its tags: a process killed on the way
leaves either no version or a complete, tagged one. A logged model left half uploaded
(status PENDING, its run killed) is marked FAILED and its partial artifacts deleted by
`fail_stale_models` before the next deployment.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from ft_pipeline.lib.deployment.registry import METRIC_TAG_PREFIX
from ft_pipeline.lib.deployment.serving import (
    ARTIFACT_KEY,
    RUNTIME_PACKAGES,
    LabelModel,
    predict_folder,
)
from ft_pipeline.lib.state.atomic import crash_point


def runtime_requirements() -> list[str]:
    """Pinned pip requirements of the serving runtime (ft_pipeline itself excluded)."""
    pins = []
    for name in RUNTIME_PACKAGES:
        try:
            # Drop a local version label (torch 2.13.0+cpu): the pin must resolve on PyPI.
            pins.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def log_and_register(
    folder: str | Path,
    registered_name: str,
    run_tags: Mapping[str, Any],
    metrics: Mapping[str, float],
    input_example_texts: Sequence[str],
    version_tags: Mapping[str, str] | None = None,
) -> ModelVersion:
    """Log a deployment folder as a pyfunc model and register it as a new version.

    Runs inside the active MLflow run (or a new one). The version is created with its tags:
    `version_tags` and the metrics (`ft_pipeline.metric.<name>`), so a later promotion gate
    can compare against the champion without going back to the run, and a version is never
    seen without them. Returns the new ModelVersion (tags included).
    """
    folder = Path(folder)
    texts = list(input_example_texts)
    if not texts:
        raise ValueError("input_example_texts must hold at least one text")
    example = pd.DataFrame({"text": pd.Series(texts, dtype=object)})
    signature = infer_signature(example, predict_folder(folder, texts))
    run = mlflow.active_run()
    with nullcontext(run) if run is not None else mlflow.start_run():
        if run_tags:
            mlflow.set_tags({k: str(v) for k, v in run_tags.items()})
        info = mlflow.pyfunc.log_model(
            name=ARTIFACT_KEY,
            python_model=LabelModel(),
            artifacts={ARTIFACT_KEY: str(folder)},
            signature=signature,
            input_example=example,
            pip_requirements=runtime_requirements(),
        )
        crash_point("deploy.model_logged")
        tags = {
            **{k: str(v) for k, v in (version_tags or {}).items()},
            **{f"{METRIC_TAG_PREFIX}{k}": repr(float(v)) for k, v in metrics.items()},
        }
        created = mlflow.register_model(info.model_uri, registered_name, tags=tags)
    return mlflow.MlflowClient().get_model_version(registered_name, str(created.version))


def _local_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme in ("", "file") else None


def _run_alive(client: MlflowClient, run_id: str | None) -> bool:
    """Whether the run may still be uploading (without a run, we cannot tell: assume so)."""
    if not run_id:
        return True
    try:
        return client.get_run(run_id).info.status == "RUNNING"
    except MlflowException:  # the run is gone: nobody is uploading for it
        return False


def fail_stale_models(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark logged models still PENDING whose run has ended as FAILED; return their ids.

    Such a model was being uploaded when its process died (a run killed outright is marked
    KILLED by `Tracker.reap_stale_runs`, which must run first). Its partial artifacts are
    deleted when they are on the local file system. A model of a live run is left alone."""
    pending = str(LoggedModelStatus.PENDING)
    failed = []
    for model in client.search_logged_models([experiment_id], max_results=1000):
        if str(model.status) != pending:
            continue
        if _run_alive(client, model.source_run_id):
            continue
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
        local = _local_path(model.artifact_location or "")
        if local is not None and local.is_dir():
            shutil.rmtree(local, ignore_errors=True)
        failed.append(model.model_id)
    return failed
