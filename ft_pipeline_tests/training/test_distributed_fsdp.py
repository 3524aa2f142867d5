"""FSDP on 2 processes (gloo on CPU): the weights are sharded, yet the rows, optimizer steps,
losses and adapter are those of one process, and its checkpoints resume on any strategy."""

# ruff: noqa: F811 (the `data` fixture, imported, is redefined as an argument)
from __future__ import annotations

import math
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file

from ft_pipeline.lib.training.launch import WorkersFailed, train_in_workers
from ft_pipeline_tests.training.test_distributed import (  # noqa: F401 (`data`: a module fixture)
    REL_TOL,
    _job,
    _ranks,
    _recipe,
    _single,
    data,
)

# One worker for the whole module: its module fixture (the two-process FSDP run)
# is built once, not once per xdist worker.
pytestmark = pytest.mark.xdist_group("fsdp")
FSDP = {"strategy": "fsdp", "processes": 2}
QUIET = dict(log=lambda _: None, warn=lambda _: None, on_log=lambda _: None)


@pytest.fixture(scope="module")
def fsdp(tiny_model_dir, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    single = _single(tiny_model_dir, data, root / "single", _recipe(tiny_model_dir))
    recipe = _recipe(tiny_model_dir, distributed=FSDP)
    lines, steps = [], []
    job = _job(tiny_model_dir, data, root / "run", recipe, trace_rows=str(root / "trace"))
    result = train_in_workers(
        job, 2, root / "run" / "workers", log=lines.append, warn=lines.append, on_log=steps.append
    )
    return recipe, result, _ranks(root / "trace", 2), lines, steps, single


def _adapters_match(a_dir, b_dir, exact: bool = False) -> bool:
    a = load_file(a_dir / "adapter_model.safetensors")
    b = load_file(b_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys() and a
    if exact:
        return all(torch.equal(a[k], b[k]) for k in a)
    return all(torch.allclose(a[k], b[k], rtol=REL_TOL, atol=1e-6) for k in a)


@pytest.mark.slow
def test_fsdp_shards_the_weights_and_trains_like_one_process(fsdp):
    _, result, per_batch, lines, steps, (single, single_rows) = fsdp
    # Each process said how the model was cut, and holds about half of every weight.
    cut = [line for line in lines if "FSDP units: 2 x LlamaDecoderLayer" in line]
    assert sorted(line.split(":")[0] for line in cut) == ["rank 0/2", "rank 1/2"], lines
    held = [re.search(r"holds ([\d,]+) of ([\d,]+) weights", line).groups() for line in cut]
    held_n = [int(h.replace(",", "")) for h, _ in held]
    total = int(held[0][1].replace(",", ""))
    assert sum(held_n) == total and all(abs(h - total / 2) <= total * 0.01 for h in held_n)
    assert any(line.startswith("worker rank 1/2 on cpu, fsdp, ") for line in lines)

    # The same rows as one process, split without overlap; the short batch's 3 rows too.
    assert per_batch.keys() == single_rows.keys()
    for key, shares in per_batch.items():
        union = [i for share in shares for i in share]
        assert len(union) == len(set(union)) and sorted(union) == sorted(single_rows[key])

    assert result.steps == result.optimizer_steps == 5
    assert [s.step for s in steps] == [1, 2, 3, 4, 5]
    for a, b in zip(single.history, result.history, strict=True):
        for name in ("train_loss", "val_loss", "grad_norm"):
            if a[name] is not None:
                assert math.isclose(a[name], b[name], rel_tol=REL_TOL), (name, a, b)
    assert result.final_val_loss < result.initial_val_loss
    # The adapter was gathered whole before rank 0 wrote it: the one-process weights.
    assert _adapters_match(single.adapter_dir, result.adapter_dir)


@pytest.mark.slow
def test_fsdp_crash_resumes_exactly_and_its_checkpoints_resume_anywhere(
    fsdp,
    tiny_model_dir,
    data,
    tmp_path,
):
    recipe, straight, *_ = fsdp
    job = _job(tiny_model_dir, data, tmp_path, recipe)
    with pytest.raises(WorkersFailed, match="fault injected after 3 steps"):
        train_in_workers({**job, "fail_after_steps": 3}, 2, tmp_path / "workers", **QUIET)
    # The checkpoint holds whole tensors, not one process's shard.
    state = torch.load(tmp_path / "checkpoints" / "step-000002" / "state.pt", weights_only=True)
    lora_a = next(t for n, t in state["trainable"].items() if "lora_A" in n)
    assert lora_a.shape == (4, 32) and type(lora_a) is torch.Tensor
    exp_avg = state["optimizer"]["state"][0]["exp_avg"]
    assert type(exp_avg) is torch.Tensor and exp_avg.abs().sum() > 0
    for other in ("alone", "ddp"):
        shutil.copytree(tmp_path / "checkpoints", tmp_path / other / "checkpoints")

    warnings: list[str] = []
    resumed = train_in_workers(job, 2, tmp_path / "workers", **{**QUIET, "warn": warnings.append})
    assert resumed.resumed_from == 2 and resumed.steps == 5 and not warnings
    assert resumed.history == straight.history
    assert _adapters_match(straight.adapter_dir, resumed.adapter_dir, exact=True)

    # The same checkpoint resumes on one process, and under DDP.
    alone, _ = _single(tiny_model_dir, data, tmp_path / "alone", _recipe(tiny_model_dir))
    ddp_recipe = _recipe(tiny_model_dir, distributed={"strategy": "ddp", "processes": 2})
    ddp = train_in_workers(
        _job(tiny_model_dir, data, tmp_path / "ddp", ddp_recipe), 2, tmp_path / "w2", **QUIET
    )
    for other in (alone, ddp):
        assert other.resumed_from == 2 and other.steps == 5 and other.optimizer_steps == 5
        assert math.isclose(other.final_val_loss, straight.final_val_loss, rel_tol=REL_TOL)
        assert _adapters_match(straight.adapter_dir, other.adapter_dir)


@pytest.mark.slow
def test_fsdp_process_without_rows_still_joins_every_pass(tiny_model_dir, data, tmp_path):
    """25 training rows make a 1-row batch, and 1 validation row leaves rank 1 none: that
    rank runs a zero-weight pass each time (FSDP's gathers need every process), which
    changes nothing: the result is still one process's."""
    pad_id, folder, train, val = data
    small = (pad_id, folder, train[:25], val[:1])
    alone = _recipe(tiny_model_dir)
    single, single_rows = _single(tiny_model_dir, small, tmp_path / "single", alone)
    assert any(len(rows) == 1 for rows in single_rows.values())
    recipe = _recipe(tiny_model_dir, distributed=FSDP)
    job = _job(tiny_model_dir, small, tmp_path / "fsdp", recipe, trace_rows=str(tmp_path / "t"))
    result = train_in_workers(job, 2, tmp_path / "workers", **QUIET)
    per_batch = _ranks(tmp_path / "t", 2)
    assert any(sorted(map(len, shares)) == [0, 1] for shares in per_batch.values())
    for a, b in zip(single.history, result.history, strict=True):
        for name in ("train_loss", "val_loss", "grad_norm"):
            if a[name] is not None:
                assert math.isclose(a[name], b[name], rel_tol=REL_TOL), (name, a, b)
    assert _adapters_match(single.adapter_dir, result.adapter_dir)
