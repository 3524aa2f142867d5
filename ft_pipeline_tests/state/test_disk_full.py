"""The state folder's disk fills up, or turns read-only, while an asset writes.

The state folder is a small tmpfs mounted for the test: "full" is a ballast file that leaves
a few KB, so the write starts and runs out of space halfway (ENOSPC); "read-only" is a
read-only bind mount over it (EROFS). For the clean partition, the tokenized dataset and
the deployed model: the materialization fails with an error naming the path and the cause,
the previous files are intact and readable, no temporary file is left behind, and once the
fault is gone the next materialization succeeds. Mounting needs root (CAP_SYS_ADMIN), as in
CI and here; elsewhere these tests skip and say why.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml

from ft_pipeline.lib.data.tokenized import load_tokenized
from ft_pipeline.lib.deployment import registry
from ft_pipeline.lib.deployment.serving import predict_folder
from ft_pipeline.lib.state import atomic
from ft_pipeline_tests.conftest import cannot_fault, fixture_rows, write_csv, write_recipe
from ft_pipeline_tests.training.test_assets import (
    LORA,
    MODEL,
    TRAINING,
    _meta,
    model_project,
)

SIZE = "64m"
A, B = "file:data/a.csv", "file:data/b.csv"
RAW = dg.AssetSelection.assets("raw_data")
CLEAN = dg.AssetSelection.assets("cleaned_data")
DATA = RAW | CLEAN
TOKENIZED = dg.AssetSelection.assets("tokenized_dataset")
DEPLOYED = dg.AssetSelection.assets("deployed_model")
CAUSE = {"full": ("ENOSPC", "no space left on device"), "read_only": ("EROFS", "read-only")}


class Disk:
    """A tmpfs mounted at `path`, to be filled or remounted read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ballast = path / "ballast"
        self.bound = False

    def _mount(self, *args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True, text=True, timeout=60)

    def fill(self, leave: int) -> None:
        """Take all free space but about `leave` bytes."""
        with self.ballast.open("ab", buffering=0) as f:
            for chunk in (1 << 20, 1 << 12):
                try:
                    while f.write(b"\0" * chunk):
                        pass
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
        with self.ballast.open("r+b") as f:
            f.truncate(max(0, self.ballast.stat().st_size - leave))

    def free(self) -> None:
        self.ballast.unlink(missing_ok=True)

    def read_only(self) -> None:
        """From now on the folder is read-only: a read-only bind mount over it. (A plain
        `remount,ro` is refused while a file is open for writing, as MLflow's database is.)"""
        self._mount("--bind", str(self.path), str(self.path))
        self._mount("-o", "remount,bind,ro", str(self.path))
        self.bound = True

    def writable(self) -> None:
        if self.bound:
            subprocess.run(["umount", "-l", str(self.path)], check=True, timeout=60)
            self.bound = False

    def fault(self, kind: str, leave: int) -> None:
        self.fill(leave) if kind == "full" else self.read_only()

    def clear(self) -> None:
        self.writable()
        self.free()


@pytest.fixture
def disk(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(home)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        cannot_fault(f"cannot mount a tmpfs as the state folder (needs root): {detail}")
    disk = Disk(home)
    try:
        yield disk
    finally:
        disk.writable()
        subprocess.run(["umount", "-l", str(home)], check=True, timeout=60)


@pytest.fixture
def project(tmp_path: Path, tiny_model_dir: Path, disk: Disk):
    write_csv(tmp_path / "data" / "a.csv", fixture_rows(30, seed=1))
    write_csv(tmp_path / "data" / "b.csv", fixture_rows(30, seed=2))
    sources = ["data/a.csv", "data/b.csv"]
    # The gate is not under test: on these few test rows, any model goes on to deployment.
    gate = {"min_f1_gain": -1.0, "max_regression": 1.0}
    recipe = write_recipe(
        tmp_path, tiny_model_dir, sources, training=TRAINING, lora=LORA, evaluation=gate
    )
    with model_project(tmp_path, recipe, prepare=False) as project:
        yield project


def failure(result) -> str:
    """Every message of the run's step failures, causes included."""
    assert not result.success
    texts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                texts.append(error.message)
                error = error.cause
    return "\n".join(texts)


def assert_clear_error(result, kind: str, path: Path) -> None:
    text = failure(result)
    assert "StateWriteError" in text and f"cannot write {path}" in text, text
    assert all(word in text for word in CAUSE[kind]), text


def snapshot(*paths: Path) -> dict[str, str]:
    """sha256 of every file under the paths."""
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*")))]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def ingest(project, key: str) -> None:
    """Add the file partition `key` and materialize its raw and clean data."""
    project.instance.add_dynamic_partitions("source_files", [key])
    assert project.materialize(DATA, key).success


def leftovers(home: Path) -> list[str]:
    return sorted(str(p) for p in home.rglob(".*") if ".tmp-" in p.name or ".old-" in p.name)


@pytest.mark.parametrize("kind", ["full", "read_only"])
def test_clean_partition_write_fault_keeps_previous_partition(project, disk, kind):
    paths = project.state.paths()
    for key in (A, B):
        ingest(project, key)
    data = paths.root / "data"
    before = snapshot(data / "clean", data / "quarantine")
    old_rows = pd.read_parquet(paths.clean(A))
    write_csv(project.root / "data" / "a.csv", fixture_rows(40, seed=3))
    assert project.materialize(RAW, A).success

    disk.fault(kind, leave=4096)
    # the partition's files are written together; the error names the one that failed
    assert_clear_error(project.materialize(CLEAN, A), kind, paths.clean(A).with_suffix(""))
    assert snapshot(data / "clean", data / "quarantine") == before
    pd.testing.assert_frame_equal(pd.read_parquet(paths.clean(A)), old_rows)
    assert len(pd.read_parquet(paths.clean(B))) > 0
    assert leftovers(paths.root) == []

    disk.clear()
    assert project.materialize(CLEAN, A).success
    assert len(pd.read_parquet(paths.clean(A))) > len(old_rows)
    assert leftovers(paths.root) == []


@pytest.mark.parametrize("kind", ["full", "read_only"])
def test_tokenized_write_fault_keeps_previous_dataset(project, disk, kind):
    paths = project.state.paths()
    ingest(project, A)
    assert project.materialize(TOKENIZED).success
    target = paths.tokenized("fixture")
    before = snapshot(target)
    _, manifest = load_tokenized(target)
    ingest(project, B)

    disk.fault(kind, leave=16384)
    assert_clear_error(project.materialize(TOKENIZED), kind, target)
    assert snapshot(target) == before
    dataset, again = load_tokenized(target)
    assert again == manifest and sorted(again["partitions"]) == [A]
    assert sum(len(dataset[s]) for s in dataset) == manifest["rows_out"]
    assert leftovers(paths.root) == []

    disk.clear()
    assert project.materialize(TOKENIZED).success
    assert sorted(load_tokenized(target)[1]["partitions"]) == [A, B]
    assert leftovers(paths.root) == []


@pytest.mark.parametrize("kind", ["full", "read_only"])
def test_deployment_write_fault_keeps_champion(project, disk, kind):
    paths = project.state.paths()
    ingest(project, A)
    assert project.materialize(TOKENIZED).success
    assert project.materialize(MODEL).success
    champion = registry.champion(project.client, "ft-fixture")
    old_folder = paths.deployments("fixture") / champion.tags["ft_pipeline.adapter_key"]
    recipe = Path(project.recipe.path)
    data = yaml.safe_load(recipe.read_text())
    data["training"]["max_steps"] = 36  # another adapter key: a new version to deploy
    recipe.write_text(yaml.safe_dump(data))
    trained = project.materialize(MODEL - DEPLOYED)
    assert trained.success
    adapter = _meta(trained, "fine_tuned_adapter")["adapter_key"]
    target = paths.deployments("fixture") / adapter / "model"
    before = snapshot(old_folder, paths.mlflow_artifacts)

    disk.fault(kind, leave=65536)
    assert_clear_error(project.materialize(DEPLOYED), kind, target)
    now = registry.champion(project.client, "ft-fixture")
    assert (now.version, now.tags) == (champion.version, champion.tags)
    assert snapshot(old_folder, paths.mlflow_artifacts) == before
    predict_folder(old_folder / "model", ["love this smooth trip"])
    assert not target.exists() and leftovers(paths.root) == []

    disk.clear()
    assert project.materialize(DEPLOYED).success
    assert (
        registry.champion(project.client, "ft-fixture").tags["ft_pipeline.adapter_key"] == adapter
    )
    assert leftovers(paths.root) == []


def test_read_only_midway_leftover_is_removed_by_the_next_write(disk):
    """The file system turns read-only halfway through staging a folder: the staged files
    cannot be deleted then, and the next write of the same target removes them."""
    target = disk.path / "tokenized" / "fixture"
    with atomic.staged_dir(target) as tmp:
        (tmp / "manifest.json").write_text("old")
    with pytest.raises(atomic.StateWriteError) as caught, atomic.staged_dir(target) as tmp:
        (tmp / "part-1").write_bytes(b"x" * 10_000)
        disk.read_only()
        (tmp / "part-2").write_bytes(b"y" * 10_000)
    assert f"cannot write {target}: read-only file system (EROFS)" in str(caught.value)
    assert (target / "manifest.json").read_text() == "old"
    assert leftovers(disk.path) == [str(atomic.temp_name(target))]

    disk.writable()
    with atomic.staged_dir(target) as tmp:
        (tmp / "manifest.json").write_text("new")
    assert (target / "manifest.json").read_text() == "new"
    assert leftovers(disk.path) == []
    shutil.rmtree(target)
