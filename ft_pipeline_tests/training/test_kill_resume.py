"""kill -9 during training: the next materialization resumes exactly where it stopped.

`ft-pipeline run` trains in a subprocess that is SIGKILLed right after its second
checkpoint. The next `ft-pipeline run` resumes from that checkpoint and ends with the same
adapter, optimizer step count and loss history as an uninterrupted run, with no MLflow run
left RUNNING and no Dagster run left STARTED (holding the `training` pool slot). Damaged
checkpoints are covered by training/test_checkpoints.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import torch
from mlflow import MlflowClient
from safetensors.torch import load_file

from ft_pipeline.defs.stale_runs import PID_TAG, owner_tags, recover_stale_runs
from ft_pipeline.lib.state.paths import StatePaths
from ft_pipeline.lib.training import checkpoints
from ft_pipeline_tests.conftest import fixture_rows, write_csv, write_recipe

STEPS = 12  # max_steps of the Dagster recipe; a checkpoint every 2 steps
KILL_AFTER_CHECKPOINTS = 2

# Runs `ft-pipeline` with checkpoints.save wrapped: after the second checkpoint is on disk
# the process stops in a sleep, where the test SIGKILLs it (so the kill lands at a known step).
STOP_AFTER_SECOND_CHECKPOINT = f"""
import sys, time
from ft_pipeline.lib.training import checkpoints
from ft_pipeline.cli import main
_save, saved = checkpoints.save, []
def save(*args, **kwargs):
    path = _save(*args, **kwargs)
    saved.append(path)
    if len(saved) >= {KILL_AFTER_CHECKPOINTS}:
        deadline = time.monotonic() + 900  # never outlive a test run that died
        while time.monotonic() < deadline:
            time.sleep(0.2)
        raise SystemExit("not killed in time")
    return path
checkpoints.save = save
sys.exit(main(sys.argv[1:]))
"""


def wait_for(predicate, timeout_s: float, what: str):
    """Poll `predicate` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.is_file() else ""


# --- kill -9 during a materialization ---------------------------------------------------


class Home:
    """A state folder and the recipe `ft-pipeline` runs against (in-process or not)."""

    def __init__(self, root: Path, recipe: Path) -> None:
        self.root, self.recipe = root, recipe
        self.paths = StatePaths(root)

    def args(self, until: str) -> list[str]:
        return ["--home", str(self.root), "--recipe", str(self.recipe), "run", "--until", until]

    def env(self) -> dict[str, str]:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "false"}
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "FT_HOME", "DAGSTER_HOME"):
            env.pop(var, None)
        return env

    def start(self, code: list[str], until: str, log: Path) -> subprocess.Popen:
        with open(log, "wb") as out:  # a file, not a pipe: Dagster's logs would fill a pipe
            return subprocess.Popen(
                [sys.executable, *code, *self.args(until)],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
            )

    def folder(self) -> Path:
        [folder] = list(self.paths.adapters("fixture").iterdir())
        return folder

    def info(self) -> dict:
        return json.loads((self.folder() / "adapter.json").read_text())

    def mlflow(self) -> MlflowClient:
        return MlflowClient(self.paths.mlflow_uri)

    def mlflow_runs(self):
        client = self.mlflow()
        experiment = client.get_experiment_by_name("ft_pipeline/fixture")
        return client.search_runs([experiment.experiment_id])


@pytest.fixture
def homes(tmp_path: Path, tiny_model_dir: Path, monkeypatch):
    write_csv(tmp_path / "data" / "corpus.csv", fixture_rows(40))
    recipe = write_recipe(
        tmp_path,
        tiny_model_dir,
        ["data/corpus.csv"],
        training={
            "learning_rate": 0.01,
            "batch_size": 8,
            "max_steps": STEPS,
            "eval_every": 4,
            "checkpoint_every": 2,
            "early_stopping_patience": None,
        },
        lora={"r": 4, "alpha": 8, "dropout": 0.1},  # dropout: the RNG state must resume too
    )
    for var in ("FT_HOME", "FT_RECIPE", "DAGSTER_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(var, "unused")  # restored after; the CLI sets them in-process
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    return Home(tmp_path / "killed", recipe), Home(tmp_path / "straight", recipe)


@pytest.mark.slow
def test_kill_9_after_second_checkpoint_then_rerun_resumes_exactly(homes, tmp_path):
    from ft_pipeline import cli

    killed, straight = homes
    assert cli.main(killed.args("tokenized_dataset")) == 0  # upstream, in-process

    log = tmp_path / "killed.log"
    proc = killed.start(["-c", STOP_AFTER_SECOND_CHECKPOINT], "fine_tuned_adapter", log)
    try:

        def two_checkpoints():
            assert proc.poll() is None, f"exited with {proc.returncode}:\n{tail(log)}"
            roots = list(killed.paths.adapters("fixture").glob("*/checkpoints"))
            return roots and len(checkpoints.complete(roots[0])) >= KILL_AFTER_CHECKPOINTS

        wait_for(two_checkpoints, 600, "the second checkpoint")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    ckpt_root = killed.folder() / "checkpoints"
    last = checkpoints.latest(ckpt_root)
    assert last is not None and last.name == "step-000004"
    assert not (killed.folder() / "adapter.json").exists()
    [dead] = killed.mlflow_runs()
    assert dead.info.status == "RUNNING"  # nothing could end it: SIGKILL is not catchable

    rerun_log = tmp_path / "rerun.log"
    rerun = killed.start(["-m", "ft_pipeline.cli"], "fine_tuned_adapter", rerun_log)
    try:

        def finished_or_blocked():
            if rerun.poll() is not None:
                return "finished"
            return "blocked" if "blocked by limit for pool" in tail(rerun_log, 20000) else None

        outcome = wait_for(finished_or_blocked, 600, "the rerun")
    finally:
        if rerun.poll() is None:
            os.killpg(rerun.pid, signal.SIGKILL)
        rc = rerun.wait(timeout=60)
    assert outcome == "finished", (
        "the killed run still holds the `training` pool slot: the rerun waits for it forever"
    )
    assert rc == 0, tail(rerun_log)
    assert "resumed from checkpoint at step 4" in rerun_log.read_text()

    info = killed.info()
    assert info["resumed_from"] == 4
    assert info["steps"] == info["total_steps"] == STEPS
    assert info["optimizer_steps"] == STEPS  # AdamW's own count: steps 1-4 came from the ckpt

    runs = {r.info.run_id: r for r in killed.mlflow_runs()}
    assert not [r.info.run_id for r in runs.values() if r.info.status == "RUNNING"]
    assert runs[dead.info.run_id].info.status == "KILLED"
    assert runs[dead.info.run_id].data.tags["ft_pipeline.ended_by"] == "reaper"
    resumed = runs[info["mlflow_run_id"]]
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["ft_pipeline.resumed_from_step"] == "4"
    steps = [m.step for m in killed.mlflow().get_metric_history(resumed.info.run_id, "train_loss")]
    assert sorted(steps) == list(range(5, STEPS + 1))  # the resumed run starts at step 5

    with dg.DagsterInstance.from_config(str(killed.paths.dagster_home)) as instance:
        statuses = {r.run_id: r.status for r in instance.get_runs()}
        event = instance.get_latest_materialization_event(dg.AssetKey("fine_tuned_adapter"))
    assert dg.DagsterRunStatus.STARTED not in statuses.values(), statuses
    assert list(statuses.values()).count(dg.DagsterRunStatus.FAILURE) == 1
    meta = event.asset_materialization.metadata
    assert meta["resumed_from_step"].value == 4 and meta["optimizer_steps"].value == STEPS

    assert cli.main(straight.args("fine_tuned_adapter")) == 0  # the same, uninterrupted
    reference = straight.info()
    assert reference["resumed_from"] is None
    assert reference["optimizer_steps"] == info["optimizer_steps"]
    assert reference["best_val_loss"] == info["best_val_loss"]
    a = load_file(straight.folder() / "adapter" / "adapter_model.safetensors")
    b = load_file(killed.folder() / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((killed.folder() / "history.json").read_text())
    assert history == json.loads((straight.folder() / "history.json").read_text())


def test_stale_run_of_a_dead_process_is_failed_and_frees_its_pool_slot(tmp_path):
    dead_pid = int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
            storage = instance.event_log_storage
            storage.set_concurrency_slots("training", 1)
            runs = {}
            for name, pid in (("dead", dead_pid), ("alive", alive.pid)):
                run = dg.DagsterRun(
                    job_name="train",
                    status=dg.DagsterRunStatus.STARTED,
                    tags={**owner_tags(), PID_TAG: str(pid)},
                )
                runs[name] = instance.add_run(run).run_id
            storage.claim_concurrency_slot("training", runs["dead"], "fine_tuned_adapter")
            assert storage.get_concurrency_info("training").active_run_ids == {runs["dead"]}

            assert recover_stale_runs(instance) == [runs["dead"]]
            assert instance.get_run_by_id(runs["dead"]).status == dg.DagsterRunStatus.FAILURE
            assert instance.get_run_by_id(runs["alive"]).status == dg.DagsterRunStatus.STARTED
            assert storage.get_concurrency_info("training").active_slot_count == 0
            assert recover_stale_runs(instance) == []
    finally:
        alive.kill()
        alive.wait()
