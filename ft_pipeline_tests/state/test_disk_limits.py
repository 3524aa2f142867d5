"""Write faults that need no mount: a file size limit (EFBIG) and permission bits (EACCES).

`state/test_disk_full.py` fills or freezes a tmpfs, which needs root. These run anywhere:
a child process writes a second version of a clean partition, the tokenized dataset and a
deployed model folder (the functions the assets call) over a first one, either under
`RLIMIT_FSIZE` of 4 KB with SIGXFSZ ignored (a write past it fails with EFBIG), or with the
state folder made read-only by its permission bits. As root the child runs through
`setpriv` without the capabilities that bypass permission bits (CAP_DAC_OVERRIDE, ...).
Each write must fail with an error naming the path and the cause, leave the first version
intact and readable and no temporary file; once the fault is gone, writing succeeds (in the
test's own process, which has nothing to drop).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ft_pipeline.lib.data import partition_store as store
from ft_pipeline.lib.data.tokenized import load_tokenized
from ft_pipeline.lib.state.paths import StatePaths
from ft_pipeline_tests.conftest import cannot_fault, write_recipe
from ft_pipeline_tests.state.test_disk_full import leftovers, snapshot

KEY = "file:data/a.csv"
LIMIT = 4096
NO_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]
CHILD = r"""
import json, resource, signal, sys
from pathlib import Path
from ft_pipeline_tests.state.test_disk_limits import WRITES

home, model, recipe, limit = sys.argv[1:5]
if int(limit):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(limit), hard))
errors = {}
for name, write in WRITES.items():
    try:
        write(Path(home), Path(model), Path(recipe), 2)
        errors[name] = ""
    except Exception as exc:
        errors[name] = f"{type(exc).__name__}: {exc}"
print("ERRORS " + json.dumps(errors))
"""


def _frame(version: int) -> pd.DataFrame:
    """150 rows that do not compress well: the Parquet file is larger than LIMIT."""
    noise = [hashlib.sha256(f"{version}-{i}".encode()).hexdigest() for i in range(150)]
    texts = [f"version {version} row {i}: {n}" for i, n in enumerate(noise)]
    return pd.DataFrame({"text": texts, "label": "neutral"})


def write_clean(home: Path, model: Path, recipe: Path, version: int) -> None:
    frame = _frame(version)
    stats = {"data_version": f"v{version}", "rows": len(frame)}
    store.write_clean(StatePaths(home), KEY, frame, frame.head(3), stats)


def write_tokenized(home: Path, model: Path, recipe: Path, version: int) -> None:
    from datasets import Dataset, DatasetDict

    from ft_pipeline.lib.data.tokenized import TokenizedResult, save_tokenized

    frame = _frame(version)
    splits = DatasetDict({s: Dataset.from_pandas(frame) for s in ("train", "validation", "test")})
    target = StatePaths(home).tokenized("fixture")
    save_tokenized(TokenizedResult(splits, frame.head(2)), target, {"data_version": version})


def deployment_folder(home: Path) -> Path:
    return StatePaths(home).deployments("fixture") / "k" / "model"


def write_deployment(home: Path, model: Path, recipe: Path, version: int) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ft_pipeline.lib.deployment.merge import write_model_folder
    from ft_pipeline.recipe import load_recipe

    merged = AutoModelForCausalLM.from_pretrained(model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    extra = {"adapter_key": "k", "version": version}
    r = load_recipe(recipe)
    write_model_folder(merged, tokenizer, r, f"card {version}", deployment_folder(home), extra)


WRITES = {"clean": write_clean, "tokenized": write_tokenized, "deployment": write_deployment}


@pytest.fixture
def state(tmp_path: Path, tiny_model_dir: Path):
    """A state folder holding version 1 of each artefact."""
    recipe = write_recipe(tmp_path, tiny_model_dir, [])
    home = tmp_path / "home"
    write_all((home, tiny_model_dir, recipe), 1)
    return home, tiny_model_dir, recipe


def run_child(state, limit: int = 0, prefix: list[str] | None = None) -> dict[str, str]:
    home, model, recipe = state
    args = [sys.executable, "-c", CHILD, str(home), str(model), str(recipe), str(limit)]
    proc = subprocess.run(
        [*(prefix or []), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    found = [line for line in proc.stdout.splitlines() if line.startswith("ERRORS ")]
    assert found, proc.stderr[-4000:]
    return json.loads(found[-1].removeprefix("ERRORS "))


def write_all(state, version: int) -> None:
    home, model, recipe = state
    for write in WRITES.values():
        write(home, model, recipe, version)


def assert_failed_cleanly(home: Path, errors: dict[str, str], words: list[str], before) -> None:
    paths = StatePaths(home)
    targets = {
        "clean": paths.clean(KEY).with_suffix(""),  # the partition's files are written together
        "tokenized": paths.tokenized("fixture"),
        "deployment": deployment_folder(home),
    }
    for name, error in errors.items():
        assert error.startswith(f"StateWriteError: cannot write {targets[name]}"), (name, error)
        assert all(word in error for word in words), (name, error)
    assert snapshot(home) == before
    assert leftovers(home) == []
    assert_version(home, 1)


def assert_version(home: Path, version: int) -> None:
    """Every artefact is whole and of this version."""
    from ft_pipeline.lib.deployment.serving import predict_folder, read_manifest

    paths = StatePaths(home)
    pd.testing.assert_frame_equal(pd.read_parquet(paths.clean(KEY)), _frame(version))
    assert store.read_clean_info(paths, KEY)["data_version"] == f"v{version}"
    dataset, manifest = load_tokenized(paths.tokenized("fixture"))
    assert manifest["data_version"] == version and dataset["train"][0]["text"].startswith(
        f"version {version} "
    )
    assert read_manifest(deployment_folder(home))["version"] == version
    assert len(predict_folder(deployment_folder(home), ["love this smooth trip"])) == 1


def test_file_size_limit_during_writes_keeps_previous_versions(state):
    home = state[0]
    before = snapshot(home)
    errors = run_child(state, limit=LIMIT)
    assert_failed_cleanly(home, errors, ["file too large", "EFBIG"], before)
    write_all(state, 2)  # no limit: version 2 goes in
    assert_version(home, 2)
    assert leftovers(home) == []


def _read_only(home: Path, writable: bool) -> None:
    for path in [home, *home.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode | 0o200 if writable else mode & ~0o222)


def test_permission_denied_during_writes_keeps_previous_versions(state):
    prefix = []
    if os.geteuid() == 0:  # root writes through permission bits unless it drops the caps
        if shutil.which("setpriv") is None:
            cannot_fault("root without setpriv: permission bits cannot stop root's writes")
        prefix = NO_DAC
    home = state[0]
    before = snapshot(home)
    _read_only(home, writable=False)
    try:
        errors = run_child(state, prefix=prefix)
    finally:
        _read_only(home, writable=True)
    assert_failed_cleanly(home, errors, ["permission denied", "EACCES"], before)
    write_all(state, 2)  # writable again: version 2 goes in
    assert_version(home, 2)
    assert leftovers(home) == []
