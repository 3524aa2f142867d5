"""Training on several processes: DDP and FSDP over gloo on CPU, launched with torchrun.

The 2-process runs must see exactly the rows one process sees, step by step, take the same
optimizer steps and reach the same validation loss (within float rounding). FSDP must
also hold half the weights on each process, and its checkpoints must resume anywhere."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from datasets import Dataset, DatasetDict
from safetensors.torch import load_file
from transformers import AutoTokenizer

from ft_pipeline.lib.data.rendering import encode_rows
from ft_pipeline.lib.training.distributed import Parallel, UnsupportedStrategy, check_supported
from ft_pipeline.lib.training.launch import WorkersFailed, stream, train_in_workers, worker_command
from ft_pipeline.lib.training.training import train_adapter
from ft_pipeline.recipe import RecipeError, parse_recipe
from ft_pipeline_tests.conftest import LABELS, fixture_rows

CPU = torch.device("cpu")
# fp32 and no dropout: with the same global batch, one process and two differ only in the
# order float sums are taken (per-shard means, the all-reduce), about 1e-7 relative per step.
TRAINING = {
    "batch_size": 8,
    "gradient_accumulation": 2,
    "max_steps": 5,
    "eval_every": 2,
    "checkpoint_every": 2,
    "learning_rate": 0.005,
    "warmup_ratio": 0.0,
    "precision": "fp32",
    "early_stopping_patience": None,
}
REL_TOL = 1e-4


def _recipe(model_dir: Path, **training):
    return parse_recipe(
        {
            "name": "t",
            "labels": LABELS,
            "prompt": {"template": "Tweet: {text}\nSentiment:"},
            "model": {"base": str(model_dir), "max_length": 64, "head": "lm"},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
            "training": {**TRAINING, **training},
        }
    )


@pytest.fixture(scope="module")
def data(tiny_model_dir, tmp_path_factory):
    """27 training rows (batches of 8, 8, 8 and 3: the short one splits 2 + 1) and 9
    validation rows, saved as a tokenized dataset the workers load."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    recipe = _recipe(tiny_model_dir)
    rows = pd.DataFrame(fixture_rows(12)).assign(response=None, messages=None)
    enc = encode_rows(rows, recipe, tokenizer).rows
    table = Dataset.from_dict({"input_ids": list(enc.input_ids), "labels": list(enc.labels)})
    folder = tmp_path_factory.mktemp("tokenized") / "dataset"
    DatasetDict(
        {"train": table.select(range(27)), "validation": table.select(range(27, 36))}
    ).save_to_disk(str(folder))
    train = list(zip(enc.input_ids[:27], enc.labels[:27], strict=True))
    val = list(zip(enc.input_ids[27:36], enc.labels[27:36], strict=True))
    return tokenizer.pad_token_id, folder, train, val


def _job(model_dir, data, out: Path, recipe, **extra) -> dict:
    pad_id, folder, train, val = data
    return {
        "recipe": recipe.model_dump(mode="json"),
        "dataset": str(folder),
        "train_rows": list(range(len(train))),
        "val_rows": list(range(len(val))),
        "base_dir": str(model_dir),
        "pad_id": pad_id,
        "out_dir": str(out),
        "device": "cpu",
        **extra,
    }


def _single(model_dir, data, out: Path, recipe):
    pad_id, _, train, val = data
    seen: dict[tuple[int, int], list[int]] = {}
    result = train_adapter(
        model_dir,
        train,
        val,
        recipe,
        out,
        pad_id=pad_id,
        device=CPU,
        dtype=None,
        on_rows=lambda step, micro, rows: seen.__setitem__((step, micro), rows),
    )
    return result, seen


def _ranks(trace: Path, world: int) -> dict[tuple[int, int], list[list[int]]]:
    per_batch: dict[tuple[int, int], list[list[int]]] = {}
    for rank in range(world):
        for line in (trace / f"rows-rank{rank}.jsonl").read_text().splitlines():
            r = json.loads(line)
            per_batch.setdefault((r["step"], r["micro"]), []).append(r["rows"])
    return per_batch


@pytest.fixture(scope="module")
def runs(tiny_model_dir, data, tmp_path_factory):
    """One process in-process, and two under torchrun, on the same rows and recipe."""
    root = tmp_path_factory.mktemp("runs")
    recipe = _recipe(tiny_model_dir)
    single, single_rows = _single(tiny_model_dir, data, root / "single", recipe)
    lines, steps = [], []
    job = _job(tiny_model_dir, data, root / "ddp", recipe, trace_rows=str(root / "trace"))
    ddp = train_in_workers(
        job, 2, root / "ddp" / "workers", log=lines.append, warn=lines.append, on_log=steps.append
    )
    return recipe, single, single_rows, ddp, _ranks(root / "trace", 2), lines, steps


@pytest.mark.slow
def test_two_processes_train_on_every_row_once_and_match_one_process(runs):
    _, single, single_rows, ddp, per_batch, lines, steps = runs
    # Rows: per step and micro-batch, the ranks' shares are disjoint and make up the batch.
    assert per_batch.keys() == single_rows.keys() and len(per_batch) == 5 * 2
    for key, shares in per_batch.items():
        assert len(shares) == 2
        union = [i for share in shares for i in share]
        assert len(union) == len(set(union)), f"a row computed twice at {key}"
        assert sorted(union) == sorted(single_rows[key]), f"rows skipped at {key}"
    short = [key for key, rows in single_rows.items() if len(rows) == 3]
    assert short and all(sorted(map(len, per_batch[key])) == [1, 2] for key in short)

    # The same optimizer steps; losses within REL_TOL at every step.
    assert ddp.steps == single.steps == 5 and ddp.optimizer_steps == single.optimizer_steps == 5
    assert [s.step for s in steps] == [1, 2, 3, 4, 5]  # rank 0's progress, once per step
    for a, b in zip(single.history, ddp.history, strict=True):
        for name in ("train_loss", "val_loss", "grad_norm"):
            if a[name] is not None:
                assert math.isclose(a[name], b[name], rel_tol=REL_TOL), (name, a, b)
    assert math.isclose(single.final_val_loss, ddp.final_val_loss, rel_tol=REL_TOL)
    assert single.final_val_loss < single.initial_val_loss

    # Rank 0 alone wrote the adapter; its weights are those of one process.
    a = load_file(single.adapter_dir / "adapter_model.safetensors")
    b = load_file(ddp.adapter_dir / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], rtol=REL_TOL, atol=1e-6) for k in a)
    assert any(line.startswith("worker rank 1/2 on cpu") for line in lines)


@pytest.mark.slow
def test_two_processes_crash_then_resume_exactly(runs, tiny_model_dir, data, tmp_path):
    recipe, _, _, straight, *_ = runs
    job = _job(tiny_model_dir, data, tmp_path, recipe)
    quiet = dict(log=lambda _: None, warn=lambda _: None, on_log=lambda _: None)
    with pytest.raises(WorkersFailed, match="fault injected after 3 steps"):
        train_in_workers({**job, "fail_after_steps": 3}, 2, tmp_path / "workers", **quiet)
    shutil.copytree(tmp_path / "checkpoints", tmp_path / "alone" / "checkpoints")
    warnings: list[str] = []
    resumed = train_in_workers(job, 2, tmp_path / "workers", **{**quiet, "warn": warnings.append})
    # Crashed after step 3, checkpoint at 2: the resumed run replays step 3 on each rank
    # from that rank's own RNG state and ends where the uninterrupted run did.
    assert resumed.resumed_from == 2 and resumed.steps == 5 and not warnings
    assert resumed.history == straight.history
    a = load_file(straight.adapter_dir / "adapter_model.safetensors")
    b = load_file(resumed.adapter_dir / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)

    # The checkpoints hold nothing specific to 2 processes: one process resumes them too.
    alone, _ = _single(tiny_model_dir, data, tmp_path / "alone", recipe)
    assert alone.resumed_from == 2 and alone.steps == 5
    assert math.isclose(alone.final_val_loss, straight.final_val_loss, rel_tol=REL_TOL)


def test_recipe_validates_the_strategy_and_processes(tiny_model_dir):
    assert _recipe(tiny_model_dir).training.distributed.nproc == 1
    bad = {
        "single with 2 processes": ({"strategy": "single", "processes": 2}, "set strategy: ddp"),
        "ddp without processes": ({"strategy": "ddp"}, "needs processes"),
        "unknown": ({"strategy": "mpi", "processes": 2}, "'single', 'ddp' or 'fsdp'"),
        "more processes than rows": (
            {"strategy": "ddp", "processes": 16},
            r"batch_size \(8\) is smaller",
        ),
    }
    for name, (spec, message) in bad.items():
        with pytest.raises(RecipeError, match=message):
            _recipe(tiny_model_dir, distributed=spec)
        assert name
    ok = _recipe(tiny_model_dir, distributed={"strategy": "ddp", "processes": 2})
    assert ok.training.distributed.nproc == 2


def test_adapter_key_ignores_the_number_of_processes(tiny_model_dir):
    from ft_pipeline.lib.training.keys import training_hash

    two = _recipe(tiny_model_dir, distributed={"strategy": "ddp", "processes": 2})
    assert training_hash(two) == training_hash(_recipe(tiny_model_dir))
    assert training_hash(_recipe(tiny_model_dir, seed=1)) != training_hash(two)


def test_shards_are_disjoint_and_cover_the_batch():
    batch = [7, 3, 9, 1, 4]
    shares = [Parallel(rank=r, world=3).shard(batch) for r in range(3)]
    assert shares == [[7, 1], [3, 4], [9]]
    assert Parallel().shard(batch) == batch


def test_strategies_are_checked_before_any_process_starts():
    for strategy in ("single", "ddp", "fsdp"):
        check_supported(strategy, CPU)
    with pytest.raises(UnsupportedStrategy, match=r"not on mps; set training\.device"):
        check_supported("fsdp", torch.device("mps"))


def test_worker_command_is_torchrun_of_this_interpreter(tmp_path):
    cmd = worker_command(2, tmp_path / "job.json")
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[-3:] == ["-m", "ft_pipeline.lib.training.worker", str(tmp_path / "job.json")]


def test_stream_passes_lines_as_they_come_and_fails_with_the_tail():
    import os
    import sys

    seen: list[str] = []
    script = "import sys\nfor i in range(100): print(f'line {i}', flush=True)\nsys.exit(3)"
    with pytest.raises(WorkersFailed, match="exited with code 3") as failed:
        stream([sys.executable, "-c", script], dict(os.environ), seen.append)
    assert seen == [f"line {i}" for i in range(100)]
    assert "line 99" in str(failed.value) and "line 10\n" not in str(failed.value)
