"""The executor: in-process by default, or the one a YAML file names (`FT_EXECUTOR_CONFIG`).

`deploy/k8s/executor.yaml` runs each step (asset or check) as its own Kubernetes job
(dagster-k8s) and `deploy/celery/executor.yaml` sends each step to Celery workers
(dagster-celery); see docs/scaling-out.md. Such a file names the executor and holds its run
config block, so the Celery one is also the file its workers start with
(`dagster-celery worker start -y ...`):

    executor: celery          # in_process | multiprocess | k8s | celery
    execution:
      config: {broker: {env: FT_CELERY_BROKER_URL}}

The config is checked against the executor's own schema when the code location loads, and
becomes the executor's configuration for every run (UI, sensors, schedule). Values written
`{env: NAME}` are read when a run starts, so secrets stay in the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import yaml
from dagster._config import validate_config

from ft_pipeline.lib.state.paths import project_file

EXECUTOR_ENV = "FT_EXECUTOR_CONFIG"


def _k8s() -> dg.ExecutorDefinition:
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor


def _celery() -> dg.ExecutorDefinition:
    from dagster_celery import celery_executor

    return celery_executor


EXECUTORS: dict[str, Callable[[], dg.ExecutorDefinition]] = {
    "in_process": lambda: dg.in_process_executor,
    "multiprocess": lambda: dg.multiprocess_executor,
    "k8s": _k8s,
    "celery": _celery,
}


class ExecutorConfigError(ValueError):
    """An executor file that does not name a known executor or fails its schema."""


def read_executor_file(path: Path) -> tuple[dg.ExecutorDefinition, dict]:
    """The executor a file names and its `execution.config`, checked against its schema."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(data) - {"executor", "execution"}
    kind = data.get("executor")
    if unknown or kind not in EXECUTORS:
        raise ExecutorConfigError(
            f"{path}: expected keys `executor` (one of {', '.join(EXECUTORS)}) and `execution`; "
            f"got executor {kind!r}" + (f" and unknown keys {sorted(unknown)}" if unknown else "")
        )
    execution = data.get("execution") or {}
    if set(execution) - {"config"}:
        raise ExecutorConfigError(f"{path}: `execution` takes one key, `config`")
    config = execution.get("config") or {}
    executor = EXECUTORS[kind]()
    result = validate_config(executor.config_schema.config_type, config)
    if not result.success:
        errors = "; ".join(error.message for error in result.errors)
        raise ExecutorConfigError(f"{path}: invalid config for the {kind} executor: {errors}")
    return executor, config


def load_executor(path: Path) -> dg.ExecutorDefinition:
    """The executor of a file, configured with its checked config."""
    executor, config = read_executor_file(path)
    return executor.configured(config) if config else executor


def executor_from_env() -> dg.ExecutorDefinition:
    """`$FT_EXECUTOR_CONFIG`'s executor, else in-process (one process per run)."""
    name = os.environ.get(EXECUTOR_ENV)
    return load_executor(project_file(name)) if name else dg.in_process_executor
