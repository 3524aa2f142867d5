"""MLflow tracking without global state: one client, explicit run ids.

`Tracker.run()` ends every run it starts: FINISHED on success, FAILED on an error, KILLED
on an interrupt (Ctrl-C, SIGTERM turned into an exception by Dagster). A hard kill
(SIGKILL, OOM) cannot be caught, so `reap_stale_runs()` marks RUNNING runs whose process
is gone as KILLED before the next run starts.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

TAG_PREFIX = "ft_pipeline."
MAX_PARAM_LENGTH = 6000


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> flat `a.b.c` string params (MLflow params are strings)."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def lineage_tags(recipe_name: str, recipe_hash: str, data_version: str, key: str) -> dict:
    """Tags that tie a run to its recipe, data and adapter (on every run we create)."""
    return {
        f"{TAG_PREFIX}recipe": recipe_name,
        f"{TAG_PREFIX}recipe_hash": recipe_hash,
        f"{TAG_PREFIX}data_version": data_version,
        f"{TAG_PREFIX}adapter_key": key,
    }


def process_alive(pid: int, started_at: float | None = None) -> bool:
    """Is `pid` running (not a zombie), and no younger than `started_at` (not a reused pid)?"""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started_at is None or process.create_time() <= started_at + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


@dataclass
class Tracker:
    """An MLflow client bound to one experiment (one per recipe)."""

    client: MlflowClient
    experiment_id: str

    @classmethod
    def connect(cls, tracking_uri: str, experiment: str, artifact_root: Path) -> Tracker:
        client = MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return cls(client, found.experiment_id)
        location = (artifact_root / experiment.replace("/", "_")).resolve().as_uri()
        return cls(client, client.create_experiment(experiment, artifact_location=location))

    def reap_stale_runs(self, is_finished: Callable[[str], bool] | None = None) -> list[str]:
        """Mark RUNNING runs whose process died as KILLED; return their ids.

        A run is stale when it was started on this host by a process that no longer exists
        (or is a zombie, or is a younger process that reused its pid), or when
        `is_finished(dagster_run_id)` says its Dagster run has ended.
        """
        reaped = []
        runs = self.client.search_runs(
            [self.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=200
        )
        host = socket.gethostname()
        for run in runs:
            tags = run.data.tags
            pid = int(tags.get(f"{TAG_PREFIX}pid", "0") or 0)
            started = run.info.start_time / 1000 if run.info.start_time else None
            here = tags.get(f"{TAG_PREFIX}host") == host
            dead_here = here and pid and not process_alive(pid, started)
            dagster_run = tags.get("dagster.run_id")
            finished = bool(is_finished and dagster_run and is_finished(dagster_run))
            if dead_here or finished:
                self.client.set_tag(run.info.run_id, f"{TAG_PREFIX}ended_by", "reaper")
                self.client.set_terminated(run.info.run_id, status="KILLED")
                reaped.append(run.info.run_id)
        return reaped

    @contextmanager
    def run(self, name: str, tags: Mapping[str, str]) -> Iterator[str]:
        """Start a run and always end it: FINISHED, FAILED (error) or KILLED (interrupt)."""
        all_tags = {
            **tags,
            f"{TAG_PREFIX}host": socket.gethostname(),
            f"{TAG_PREFIX}pid": str(os.getpid()),
        }
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        run_id = run.info.run_id
        try:
            yield run_id
        except Exception as exc:
            self.client.set_tag(run_id, f"{TAG_PREFIX}error", f"{type(exc).__name__}: {exc}"[:5000])
            self.client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FAILED))
            raise
        except BaseException:
            self.client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.KILLED))
            raise
        self.client.set_terminated(run_id, status="FINISHED")

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        if batch:
            self.client.log_batch(run_id, metrics=batch)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_dataset(
        self, run_id: str, frame: pd.DataFrame, name: str, context: str, digest: str, source: str
    ) -> None:
        """Record a dataset as a run input (lineage), with its digest."""
        import mlflow.data
        from mlflow.data.dataset_source_registry import resolve_dataset_source

        dataset = mlflow.data.from_pandas(
            frame, source=resolve_dataset_source(source), name=name, digest=digest
        )
        entity = DatasetInput(
            dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)]
        )
        self.client.log_inputs(run_id, datasets=[entity])

    def log_artifacts(self, run_id: str, folder: Path, artifact_path: str) -> None:
        self.client.log_artifacts(run_id, str(folder), artifact_path)
