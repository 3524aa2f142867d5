"""Registration: log a deployment folder as an MLflow pyfunc and register a version."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import infer_signature

from ft_pipeline.lib.registry import METRIC_TAG_PREFIX
from ft_pipeline.lib.serving import ARTIFACT_KEY, RUNTIME_PACKAGES, LabelModel, predict_folder


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
) -> ModelVersion:
    """Log a deployment folder as a pyfunc model and register it as a new version.

    Runs inside the active MLflow run (or a new one). The version is tagged with the metrics
    (`ft_pipeline.metric.<name>`) so a later promotion gate can compare against the champion
    without going back to the run. Returns the new ModelVersion (tags included).
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
            registered_model_name=registered_name,
            pip_requirements=runtime_requirements(),
        )
    if info.registered_model_version is None:
        raise RuntimeError(f"MLflow did not register a version of {registered_name!r}")
    version_id = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in metrics.items():
        client.set_model_version_tag(
            registered_name, version_id, f"{METRIC_TAG_PREFIX}{key}", repr(float(value))
        )
    return client.get_model_version(registered_name, version_id)
