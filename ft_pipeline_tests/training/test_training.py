"""Training loop, checkpoints, batching and MLflow tracking, without Dagster."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ft_pipeline.lib.model.batching import epoch_batches
from ft_pipeline.lib.state.tracking import Tracker, flatten
from ft_pipeline.lib.training import checkpoints
from ft_pipeline.lib.training.training import InjectedFault, total_steps, train_adapter
from ft_pipeline_tests.conftest import lora_setup

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    return lora_setup(tiny_model_dir, max_steps=10)


def _train(setup, out: Path, recipe=None, **kw):
    model_dir, tokenizer, default, train, val = setup
    return train_adapter(
        model_dir,
        train,
        val,
        recipe or default,
        out,
        pad_id=tokenizer.pad_token_id,
        device=CPU,
        dtype=None,
        **kw,
    )


def test_crash_and_resume_gives_the_same_adapter_as_an_uninterrupted_run(setup, tmp_path):
    straight = _train(setup, tmp_path / "a")
    assert straight.steps == 10 and straight.resumed_from is None
    assert straight.best_val_loss < straight.initial_val_loss

    with pytest.raises(InjectedFault):
        _train(setup, tmp_path / "b", fail_after_steps=5)
    ckpt = tmp_path / "b" / "checkpoints"
    assert [p.name for p in checkpoints.complete(ckpt)] == ["step-000002", "step-000004"]
    (ckpt / "step-000006").mkdir()  # half-written: no marker, must be skipped
    resumed = _train(setup, tmp_path / "b")
    assert resumed.resumed_from == 4 and resumed.steps == 10
    assert resumed.optimizer_steps == straight.optimizer_steps == 10  # AdamW's own count

    a = load_file(tmp_path / "a" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history == straight.history


def test_early_stopping_keeps_the_best_adapter(setup, tmp_path):
    recipe = setup[2].model_copy(
        update={
            "training": setup[2].training.model_copy(
                update={
                    "learning_rate": 0.5,
                    "max_steps": 30,
                    "eval_every": 1,
                    "early_stopping_patience": 2,
                }
            )
        }
    )
    result = _train(setup, tmp_path, recipe=recipe)
    assert result.stopped_early and result.steps < 30
    vals = [h["val_loss"] for h in result.history if h["val_loss"] is not None]
    assert result.best_val_loss == min(vals)


def test_total_steps_from_epochs_and_accumulation(setup):
    recipe = setup[2]
    t = recipe.training.model_copy(
        update={"max_steps": None, "epochs": 2.0, "gradient_accumulation": 2, "batch_size": 4}
    )
    assert total_steps(30, recipe.model_copy(update={"training": t})) == 8  # ceil(8/2) * 2


def test_epoch_batches_cover_every_row_once_and_are_deterministic():
    lengths = [5, 9, 3, 7, 7, 2, 8, 1, 6, 4, 10]
    first = epoch_batches(lengths, 3, seed=1, epoch=0, window=2)
    assert sorted(i for b in first for i in b) == list(range(len(lengths)))
    assert first == epoch_batches(lengths, 3, seed=1, epoch=0, window=2)
    assert first != epoch_batches(lengths, 3, seed=1, epoch=1, window=2)


def test_checkpoints_keep_the_newest_complete_ones(tmp_path):
    for step in (2, 4, 6):
        checkpoints.save(tmp_path, step, {"w": torch.ones(2) * step}, {"step": step}, keep=2)
    assert [p.name for p in checkpoints.complete(tmp_path)] == ["step-000004", "step-000006"]
    (tmp_path / "step-000008.tmp").mkdir()
    state, meta = checkpoints.load(checkpoints.latest(tmp_path))
    assert meta == {"step": 6} and torch.equal(state["w"], torch.full((2,), 6.0))


def test_flatten_nested_params():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {
        "a.b": "1",
        "a.c.d": "[1, 2]",
        "e": "None",
    }


@pytest.fixture
def tracker(tmp_path) -> Tracker:
    return Tracker.connect(f"sqlite:///{tmp_path / 'mlflow.db'}", "ft_pipeline/t", tmp_path / "art")


def test_tracked_run_ends_failed_or_killed_never_running(tracker):
    with tracker.run("ok", {}) as ok:
        tracker.log_metrics(ok, {"x": 1.0})
    with pytest.raises(ValueError), tracker.run("bad", {}) as bad:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), tracker.run("stopped", {}) as stopped:
        raise KeyboardInterrupt
    status = {r: tracker.client.get_run(r).info.status for r in (ok, bad, stopped)}
    assert status == {ok: "FINISHED", bad: "FAILED", stopped: "KILLED"}
    assert "boom" in tracker.client.get_run(bad).data.tags["ft_pipeline.error"]


def test_reaper_kills_runs_of_dead_processes_only(tracker, tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    import socket

    host = socket.gethostname()
    run_dead = tracker.client.create_run(
        tracker.experiment_id,
        tags={"ft_pipeline.host": host, "ft_pipeline.pid": dead.stdout.strip()},
    ).info.run_id
    run_alive = tracker.client.create_run(
        tracker.experiment_id, tags={"ft_pipeline.host": host, "ft_pipeline.pid": str(os.getpid())}
    ).info.run_id
    run_dagster = tracker.client.create_run(
        tracker.experiment_id, tags={"dagster.run_id": "gone"}
    ).info.run_id
    reaped = tracker.reap_stale_runs(is_finished=lambda run_id: run_id == "gone")
    assert set(reaped) == {run_dead, run_dagster}
    assert tracker.client.get_run(run_dead).info.status == "KILLED"
    assert tracker.client.get_run(run_alive).info.status == "RUNNING"
    shutil.rmtree(tmp_path / "art", ignore_errors=True)


def test_reaper_sees_through_zombies_and_reused_pids(tracker):
    import socket
    import time

    import psutil

    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits, not yet waited for
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        deadline = time.monotonic() + 120
        while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.05)
        tags = {"ft_pipeline.host": socket.gethostname()}

        def run(pid: int, start_ms: int | None = None) -> str:
            return tracker.client.create_run(
                tracker.experiment_id,
                start_time=start_ms,
                tags={**tags, "ft_pipeline.pid": str(pid)},
            ).info.run_id

        of_zombie = run(zombie.pid)
        hour_ago = int((time.time() - 3600) * 1000)
        reused = run(alive.pid, start_ms=hour_ago)  # that pid is now a younger process's
        current = run(alive.pid)
        assert set(tracker.reap_stale_runs()) == {of_zombie, reused}
        assert tracker.client.get_run(current).info.status == "RUNNING"
    finally:
        for proc in (zombie, alive):
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("head_lr", [None, 0.02])
def test_classifier_head_gets_its_own_learning_rate(setup, tiny_model_dir, head_lr):
    from peft import get_peft_model

    from ft_pipeline.lib.model.heads import head_for
    from ft_pipeline.lib.model.lora import param_groups, peft_config

    recipe = setup[2]
    recipe = recipe.model_copy(
        update={
            "model": recipe.model.model_copy(update={"head": "classifier"}),
            "training": recipe.training.model_copy(
                update={"learning_rate": 1e-3, "head_learning_rate": head_lr}
            ),
        }
    )
    base = head_for(recipe).load(tiny_model_dir, CPU, 0)
    model = get_peft_model(base, peft_config(recipe))
    body, head = param_groups(model, recipe)
    names = {id(p): n for n, p in model.named_parameters()}
    assert body["lr"] == 1e-3 and all("lora_" in names[id(p)] for p in body["params"])
    assert head["lr"] == (head_lr or 1e-3)
    assert head["params"] and all("modules_to_save" in names[id(p)] for p in head["params"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(body["params"]) + len(head["params"]) == len(trainable)
