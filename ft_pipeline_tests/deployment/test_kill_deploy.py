"""Kill -9 during deployment: `champion` and the model it serves are the old version or the
new one, whole, never a mix; the next deployment cleans up and finishes.

Each drill deploys a new adapter over a deployed champion in a child process that SIGKILLs
itself at a named point of the real code (`FT_PIPELINE_CRASH_AT`, `ft_pipeline.lib.state.atomic`)
or halfway through MLflow's artifact upload. The children are forked from one helper that
has already imported the pipeline, so a drill costs a deployment, not the imports.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from safetensors.torch import load_file, save_file

from ft_pipeline.lib.deployment import registry
from ft_pipeline.lib.deployment.job import KEY_TAG, fluent_tracking_uri
from ft_pipeline.lib.deployment.serving import ARTIFACT_KEY, predict_folder, read_manifest
from ft_pipeline_tests.training.test_assets import MODEL, ModelProject, _project, model_project

# One worker for the whole module: its module fixture (the deployed first version)
# is built once, not once per xdist worker.
pytestmark = pytest.mark.xdist_group("kill-deploy")
NAME = "ft-fixture"
TEXTS = ["the gate was awful and late", "love this smooth trip", "check the schedule"]
JOB_TIMEOUT_S = 300
HELPER = r"""
import json, os, shutil, signal, sys, traceback
from pathlib import Path
from ft_pipeline.lib.training.adapter_info import read_info
from ft_pipeline.lib.deployment.job import deploy
from ft_pipeline.lib.evaluation.job import read_result
from ft_pipeline.lib.state.paths import StatePaths
from ft_pipeline.lib.state.tracking import Tracker
from ft_pipeline.recipe import load_recipe

def run(home, recipe, key, crash, out):
    if crash == "upload":  # kill MLflow halfway through copying the model's artifacts
        copy2, done = shutil.copy2, []
        def copy_then_die(src, dst, *a, **k):
            copy2(src, dst, *a, **k)
            done.append(dst)
            if "mlartifacts" in str(dst) and len(done) >= 3:
                os.kill(os.getpid(), signal.SIGKILL)
        shutil.copy2 = copy_then_die
    elif crash:
        os.environ["FT_PIPELINE_CRASH_AT"] = crash
    paths, r = StatePaths(Path(home)), load_recipe(recipe)
    tracker = Tracker.connect(paths.mlflow_uri, f"ft_pipeline/{r.name}", paths.mlflow_artifacts)
    info = read_info(paths.adapters(r.name) / key)
    result = read_result(paths.reports(r.name) / key)
    done = deploy(paths, r, key, info, result, tracker, paths.mlflow_uri, tags={}, log=print)
    Path(out).write_text(json.dumps(done))

for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        os.dup2(2, 1)
        try:
            run(**json.loads(line))
            code = 0
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    killed = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    print(json.dumps({"signal": killed, "exit": code}), flush=True)
"""


class Deployer:
    """The helper process: one forked child per deployment."""

    def __init__(self, project: ModelProject, log: Path) -> None:
        self.project, self.log = project, log
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HELPER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("w"),
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": ""},
        )

    def deploy(self, key: str, crash: str | None = None) -> dict:
        out = self.log.with_name(f"{key}-{crash}.json")
        job = {
            "home": str(self.project.state.root),
            "recipe": self.project.recipe.path,
            "key": key,
            "crash": crash,
            "out": str(out),
        }
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + JOB_TIMEOUT_S
            while not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"deployment {job} did not end; see {self.log}")
        status = json.loads(self.proc.stdout.readline())
        if out.is_file():
            status["result"] = json.loads(out.read_text())
        return status

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, tiny_model_dir):
    """A project whose first adapter is deployed (version 1 is champion), and the helper."""
    root = tmp_path_factory.mktemp("deploy-crash")
    _, recipe = _project(root, tiny_model_dir)
    with model_project(root, recipe) as project:
        assert project.materialize(MODEL).success
        deployer = Deployer(project, root / "helper.log")
        try:
            yield project, deployer
        finally:
            deployer.close()


def first_key(project: ModelProject) -> str:
    return project.client.get_model_version(NAME, "1").tags[KEY_TAG]


def new_adapter(project: ModelProject, name: str, scale: float) -> str:
    """Another evaluated adapter: the first one's files under a new key, with LoRA B scaled
    (so that its predictions differ)."""
    paths = project.state.paths()
    source = first_key(project)
    key = f"{source[:8]}-{name}"
    for folder in (paths.adapters("fixture"), paths.reports("fixture")):
        shutil.copytree(folder / source, folder / key)
    weights = paths.adapters("fixture") / key / "adapter" / "adapter_model.safetensors"
    tensors = load_file(weights)
    save_file({k: v * scale if "lora_B" in k else v for k, v in tensors.items()}, weights)
    info = paths.adapters("fixture") / key / "adapter.json"
    info.write_text(json.dumps({**json.loads(info.read_text()), "key": key}))
    return key


def served(project: ModelProject, version) -> Path:
    """The folder `models:/<name>@champion` serves for this version (its MLflow artifacts)."""
    model_id = version.source.removeprefix("models:/")
    location = project.client.get_logged_model(model_id).artifact_location
    return Path(location.removeprefix("file://"))


def scores(frame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("score_")]].to_numpy()


def assert_one_whole_champion(project: ModelProject, allowed: set[str]) -> str:
    """The champion is one of `allowed` keys, and what it serves is that model, complete."""
    champion = registry.champion(project.client, NAME)
    key = champion.tags[KEY_TAG]
    assert key in allowed
    folder = project.state.paths().deployments("fixture") / key / "model"
    model_dir = served(project, champion)
    assert read_manifest(model_dir / "artifacts" / ARTIFACT_KEY)["adapter_key"] == key
    want = predict_folder(folder, TEXTS)
    with fluent_tracking_uri(project.mlflow.uri(project.state)):  # as `make serve` loads it
        got = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    got = got.predict(pd.DataFrame({"text": TEXTS}))
    assert list(got["label"]) == list(want["label"])
    assert np.allclose(scores(got), scores(want), atol=1e-6)
    return key


def leftovers(project: ModelProject) -> list[str]:
    root = project.state.paths().deployments("fixture")
    return sorted(p.name for p in root.glob("*/.model.*"))


# (crash points in order, for one drill), as the deployment meets them.
DRILLS = {
    "staging": ["deploy.folder.staging"],
    "staged": ["deploy.folder.staged"],
    "written": ["deploy.folder_written"],
    "swapping": ["deploy.folder_written", "deploy.folder.swapping"],
    "upload": ["upload"],
    "logged": ["deploy.model_logged"],
    "registered": ["deploy.registered"],
    "alias": ["promote.alias"],
    "promoted": ["deploy.promoted"],
}


@pytest.mark.parametrize("drill", list(DRILLS))
def test_kill_9_during_deployment_leaves_old_or_new_champion(deployed, drill: str) -> None:
    project, deployer = deployed
    before = registry.champion(project.client, NAME)
    old = assert_one_whole_champion(project, {before.tags[KEY_TAG]})
    key = new_adapter(project, drill, scale=1.5 + 0.5 * list(DRILLS).index(drill))
    target = project.state.paths().deployments("fixture") / key / "model"
    for point in DRILLS[drill]:
        status = deployer.deploy(key, crash=point)
        assert status["signal"] == signal.SIGKILL, (point, status, deployer.log.read_text())
        champion = assert_one_whole_champion(project, {old, key})
        assert champion == (key if point == "deploy.promoted" else old)
        if target.exists():  # never half written: then it is the complete new folder
            assert read_manifest(target)["adapter_key"] == key
            predict_folder(target, TEXTS[:1])

    status = deployer.deploy(key)
    assert status["exit"] == 0, deployer.log.read_text()
    assert status["result"]["previous"] == str(before.version)
    assert assert_one_whole_champion(project, {key}) == key
    assert leftovers(project) == []
    versions = project.client.search_model_versions(f"name = '{NAME}'")
    assert sum(v.tags.get(KEY_TAG) == key for v in versions) == 1
    experiment = project.mlflow.tracker(project.state, project.recipe.load()).experiment_id
    assert project.client.search_runs([experiment], "attributes.status = 'RUNNING'") == []
    logged = project.client.search_logged_models([experiment], max_results=1000)
    assert [m.model_id for m in logged if str(m.status) == "PENDING"] == []
