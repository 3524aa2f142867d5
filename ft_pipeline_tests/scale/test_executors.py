"""The Kubernetes and Celery setups (deploy/), checked with Dagster's own config validation.

No cluster, broker or database is needed: each file is validated against the schema of the
executor or run launcher it configures, the way Dagster does when it loads them, and the
training step's Kubernetes job is built with dagster-k8s's own job builder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import yaml
from dagster._config import process_config, resolve_to_config_type
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.instance.ref import InstanceRef

from ft_pipeline.definitions import defs
from ft_pipeline.defs.executors import (
    ExecutorConfigError,
    executor_from_env,
    load_executor,
    read_executor_file,
)
from ft_pipeline.lib.state.paths import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
K8S_EXECUTOR = DEPLOY / "k8s" / "executor.yaml"
K8S_INSTANCE = DEPLOY / "k8s" / "dagster.yaml"
CELERY_EXECUTOR = DEPLOY / "celery" / "executor.yaml"
PG_ENV = {
    "DAGSTER_PG_HOST": "postgresql.internal",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "ft",
    "DAGSTER_PG_PASSWORD": "not-a-secret",
    "DAGSTER_PG_DB": "dagster",
}


def _job(executor: dg.ExecutorDefinition) -> dg.JobDefinition:
    """The pipeline's asset job (every asset and check) on the given executor."""
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        resources=defs.resources,
        executor=executor,
    ).resolve_implicit_global_asset_job_def()


def validate_instance_file(path: Path, tmp_path: Path) -> dict:
    """Dagster's instance schema, then each configurable class's own schema (as on load)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(path.read_text())
    config, _ = dagster_instance_config(str(home))
    ref = InstanceRef.from_dir(str(home))
    for data in (ref.storage_data, ref.run_launcher_data, ref.compute_logs_data):
        klass = getattr(__import__(data.module_name, fromlist=[data.class_name]), data.class_name)
        result = process_config(resolve_to_config_type(klass.config_type()), data.config_dict)
        assert result.success, (data.class_name, [e.message for e in result.errors])
    return config


def env_references(*paths: Path) -> set[str]:
    return {m for p in paths for m in re.findall(r"env:\s*(\w+)", p.read_text())}


def test_k8s_executor_validates_and_trains_on_a_gpu(monkeypatch, tmp_path):
    for name, value in PG_ENV.items():
        monkeypatch.setenv(name, value)
    executor, config = read_executor_file(K8S_EXECUTOR)
    assert executor.name == "k8s"
    data = yaml.safe_load(K8S_EXECUTOR.read_text())
    # The file is valid run config for the pipeline's job on dagster-k8s's executor ...
    dg.validate_run_config(_job(executor), {"execution": data["execution"]})
    # ... and, configured as the code location does, needs no run config at all.
    job = _job(load_executor(K8S_EXECUTOR))
    resolved = dg.validate_run_config(job, {})["execution"]["k8s"]
    assert resolved["job_namespace"] == "ft-pipeline"
    ops = {node.name for node in job.graph.nodes}
    assert set(config["per_step_k8s_config"]) <= ops  # a misspelt step would be ignored

    launcher = validate_instance_file(K8S_INSTANCE, tmp_path)["run_launcher"]
    assert launcher["class"] == "K8sRunLauncher"
    training = _step_job(launcher["config"], resolved, "fine_tuned_adapter")
    ingest = _step_job(launcher["config"], resolved, "raw_data")
    for job_spec in (training, ingest):
        pod = job_spec.spec.template.spec
        [container] = pod.containers
        assert {v.name for v in pod.volumes} == {"ft-home"}
        assert [m.mount_path for m in container.volume_mounts] == ["/ft_home"]
        assert [e.config_map_ref.name for e in container.env_from] == ["ft-pipeline-env"]
        password = [e for e in container.env if e.name == "DAGSTER_PG_PASSWORD"]
        assert password[0].value_from.secret_key_ref.name == "dagster-postgresql-secret"
    gpu = training.spec.template.spec.containers[0].resources.limits
    assert gpu["nvidia.com/gpu"] == "1"
    assert [t.key for t in training.spec.template.spec.tolerations] == ["nvidia.com/gpu"]
    assert "nvidia.com/gpu" not in ingest.spec.template.spec.containers[0].resources.limits


def _step_job(launcher: dict, executor: dict, op: str):
    """The Kubernetes Job dagster-k8s would create for one step (as K8sStepHandler does)."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import UserDefinedDagsterK8sConfig, construct_dagster_k8s_job

    def context(cfg: dict, **extra) -> K8sContainerContext:
        keys = ("env_config_maps", "env_secrets", "env_vars", "volume_mounts", "volumes")
        keys += ("resources", "labels", "service_account_name", "image_pull_policy")
        return K8sContainerContext(**{k: cfg[k] for k in keys if cfg.get(k)}, **extra)

    run = context(launcher, namespace=launcher["job_namespace"])
    step = context(
        executor,
        namespace=executor.get("job_namespace"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(executor.get("step_k8s_config", {})),
    )
    per_op = UserDefinedDagsterK8sConfig.from_dict(executor["per_step_k8s_config"].get(op, {}))
    merged = run.merge(step).merge(K8sContainerContext(run_k8s_config=per_op))
    assert merged.namespace == "ft-pipeline"
    job_config = merged.get_k8s_job_config(
        "REGISTRY/ft-pipeline:TAG",
        SimpleNamespace(
            job_image=None,
            **{
                k: launcher.get(k)
                for k in ("dagster_home", "instance_config_map", "postgres_password_secret")
            },
        ),
    )
    return construct_dagster_k8s_job(
        job_config,
        ["dagster", "api", "execute_step"],
        f"dagster-step-{op.replace('_', '-')}",
        user_defined_k8s_config=merged.run_k8s_config,
    )


def test_k8s_files_agree_with_the_project(tmp_path):
    """Every `env:` the k8s files read is set by ft-pipeline.yaml's ConfigMap or a Secret."""
    manifests = list(yaml.safe_load_all((DEPLOY / "k8s" / "ft-pipeline.yaml").read_text()))
    [env] = [m["data"] for m in manifests if m["kind"] == "ConfigMap"]
    assert env_references(K8S_INSTANCE, K8S_EXECUTOR) <= set(env) | {"DAGSTER_PG_PASSWORD"}
    assert (PROJECT_ROOT / env["FT_EXECUTOR_CONFIG"]).resolve() == K8S_EXECUTOR
    base = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    k8s = yaml.safe_load(K8S_INSTANCE.read_text())
    for section in ("telemetry", "concurrency", "run_retries"):
        assert k8s[section] == base[section], section


def test_celery_executor_validates_with_the_broker_from_the_environment(monkeypatch):
    executor, _ = read_executor_file(CELERY_EXECUTOR)
    assert executor.name == "celery"
    data = yaml.safe_load(CELERY_EXECUTOR.read_text())
    monkeypatch.setenv("FT_CELERY_BROKER_URL", "pyamqp://ft@rabbitmq.internal//")
    dg.validate_run_config(_job(executor), {"execution": data["execution"]})
    resolved = dg.validate_run_config(_job(load_executor(CELERY_EXECUTOR)), {})
    assert resolved["execution"]["celery"]["broker"] == "pyamqp://ft@rabbitmq.internal//"
    # The workers read the same file (dagster-celery worker start -y ...).
    from dagster_celery.cli import get_validated_config

    assert get_validated_config(str(CELERY_EXECUTOR))["broker"].startswith("pyamqp://")

    monkeypatch.delenv("FT_CELERY_BROKER_URL")
    with pytest.raises(DagsterInvalidConfigError, match="FT_CELERY_BROKER_URL"):
        dg.validate_run_config(_job(load_executor(CELERY_EXECUTOR)), {})


def test_a_bad_executor_file_fails_at_load_with_the_field(tmp_path):
    bad = tmp_path / "executor.yaml"
    bad.write_text("executor: celery\nexecution:\n  config:\n    brokr: pyamqp://x//\n")
    with pytest.raises(ExecutorConfigError, match='unexpected config entry "brokr"'):
        load_executor(bad)
    bad.write_text("executor: spark\n")
    with pytest.raises(ExecutorConfigError, match="in_process, multiprocess, k8s, celery"):
        load_executor(bad)


def test_executor_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("FT_EXECUTOR_CONFIG", raising=False)
    assert executor_from_env() is dg.in_process_executor
    monkeypatch.setenv("FT_EXECUTOR_CONFIG", "deploy/celery/executor.yaml")
    assert executor_from_env().name == "celery"
    # The code location itself loads with the Kubernetes executor.
    code = (
        "from ft_pipeline.definitions import defs; "
        "print(defs.resolve_implicit_global_asset_job_def().executor_def.name)"
    )
    env = {**os.environ, "FT_EXECUTOR_CONFIG": str(K8S_EXECUTOR)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "k8s"
