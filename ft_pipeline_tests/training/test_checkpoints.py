"""Damaged checkpoints are skipped for the previous one, and none is read with pickle.

The newest checkpoint is damaged after a crash (truncated weights, missing trainer state,
garbage, a pickle that would run code, weights that do not fit the model): training warns,
naming it, sets it aside and resumes from the one before it, ending with exactly the
adapter of an uninterrupted run. Checkpoints are read with `weights_only=True`.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ft_pipeline.lib.training import checkpoints
from ft_pipeline.lib.training.training import InjectedFault, train_adapter
from ft_pipeline_tests.conftest import lora_setup

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    return lora_setup(tiny_model_dir, max_steps=8)


def _train(setup, out: Path, **kw):
    model_dir, tokenizer, recipe, train, val = setup
    return train_adapter(
        model_dir,
        train,
        val,
        recipe,
        out,
        pad_id=tokenizer.pad_token_id,
        device=CPU,
        dtype=None,
        **kw,
    )


@pytest.fixture(scope="module")
def straight(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    result = _train(setup, out)
    return result, load_file(out / "adapter" / "adapter_model.safetensors")


def _reseal(ckpt: Path) -> None:
    """Rewrite the marker to match the files: an attacker who can write the whole folder."""
    files = {
        name: {"size": (ckpt / name).stat().st_size, "sha256": checkpoints.file_sha256(ckpt / name)}
        for name in (checkpoints.STATE_FILE, checkpoints.META_FILE)
    }
    (ckpt / checkpoints.COMPLETE).write_text(json.dumps({"step": 4, "files": files}))


class RunsCode:
    """Unpickling this calls Path.touch(target): what `weights_only=False` would do."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def truncate_weights(ckpt: Path, tmp_path: Path) -> None:
    state = ckpt / checkpoints.STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])


def remove_trainer_state(ckpt: Path, tmp_path: Path) -> None:
    (ckpt / checkpoints.META_FILE).unlink()


def garbage_weights(ckpt: Path, tmp_path: Path) -> None:
    state = ckpt / checkpoints.STATE_FILE
    state.write_bytes(os.urandom(state.stat().st_size))


def pickle_that_runs_code(ckpt: Path, tmp_path: Path) -> None:
    torch.save({"trainable": RunsCode(tmp_path / "pwned")}, ckpt / checkpoints.STATE_FILE)
    _reseal(ckpt)  # the digests match: only weights_only=True stands in the way


def wrong_shapes(ckpt: Path, tmp_path: Path) -> None:
    state = torch.load(ckpt / checkpoints.STATE_FILE, weights_only=True)
    state["trainable"] = {k: torch.zeros(1) for k in state["trainable"]}
    torch.save(state, ckpt / checkpoints.STATE_FILE)
    _reseal(ckpt)  # a valid, intact checkpoint that does not fit the model


@pytest.mark.parametrize(
    "damage",
    [truncate_weights, remove_trainer_state, garbage_weights, pickle_that_runs_code, wrong_shapes],
)
def test_damaged_latest_checkpoint_is_skipped_for_the_previous_one(
    setup, straight, tmp_path, damage
):
    out = tmp_path / "run"
    with pytest.raises(InjectedFault):
        _train(setup, out, fail_after_steps=5)
    ckpt_root = out / "checkpoints"
    assert [p.name for p in checkpoints.complete(ckpt_root)] == ["step-000002", "step-000004"]
    bad = ckpt_root / "step-000004"
    damage(bad, tmp_path)

    warnings: list[str] = []
    resumed = _train(setup, out, on_warning=warnings.append)
    assert not (tmp_path / "pwned").exists(), "code from the checkpoint file ran"
    assert len(warnings) == 1 and str(bad) in warnings[0], warnings
    assert resumed.skipped_checkpoints == warnings
    assert resumed.resumed_from == 2
    assert (ckpt_root / "step-000004.corrupt").is_dir()  # set aside, kept for inspection
    assert resumed.steps == resumed.optimizer_steps == 8

    expected, weights = straight
    got = load_file(out / "adapter" / "adapter_model.safetensors")
    assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in got)
    assert resumed.history == expected.history


def test_every_checkpoint_damaged_starts_over_with_a_warning_each(tmp_path, caplog):
    for step in (2, 4):
        checkpoints.save(tmp_path, step, {"w": torch.ones(2)}, {"step": step})
        (tmp_path / checkpoints._name(step) / checkpoints.STATE_FILE).write_bytes(b"")
    with caplog.at_level("WARNING", logger=checkpoints.__name__):
        assert checkpoints.latest(tmp_path) is None
    named = [str(tmp_path / "step-000004"), str(tmp_path / "step-000002")]
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"skipping corrupt checkpoint {p}" for p in named
    ]
    assert checkpoints.complete(tmp_path) == []


def test_checkpoint_state_is_read_without_unpickling_code(tmp_path):
    checkpoints.save(tmp_path, 2, {"w": torch.ones(2)}, {"step": 2})
    ckpt = tmp_path / "step-000002"
    with open(ckpt / checkpoints.STATE_FILE, "wb") as f:
        pickle.dump({"w": RunsCode(tmp_path / "pwned")}, f, protocol=2)
    _reseal(ckpt)
    with pytest.raises(checkpoints.CorruptCheckpoint, match="does not load as weights"):
        checkpoints.load(ckpt)
    assert not (tmp_path / "pwned").exists()


def test_save_keeps_two_checkpoints_even_when_asked_for_one(tmp_path):
    for step in (2, 4, 6):
        checkpoints.save(tmp_path, step, {"w": torch.ones(1)}, {"step": step}, keep=1)
    assert [p.name for p in checkpoints.complete(tmp_path)] == ["step-000004", "step-000006"]
    marker = json.loads((tmp_path / "step-000006" / checkpoints.COMPLETE).read_text())
    assert marker["step"] == 6 and set(marker["files"]) == {"state.pt", "meta.json"}
    shutil.rmtree(tmp_path / "step-000006")
    (tmp_path / "step-000008.tmp").mkdir()  # a crash while writing: never loaded
    assert checkpoints.latest(tmp_path) == tmp_path / "step-000004"
