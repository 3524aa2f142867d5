"""Start the training processes (torchrun) and stream what they print.

The parent process (the Dagster asset, via `adapter_job.fit_adapter`) keeps everything
that is not training: the adapter key, the MLflow run and its metrics, adapter.json. The
workers only train. Their output is read line by line as it comes: step lines become the
usual log line and MLflow metrics, warnings become warnings, any other line is logged as
it is. A non-zero exit raises `WorkersFailed` with the last lines of output.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ft_pipeline
from ft_pipeline.lib.training.training import StepLog, TrainResult
from ft_pipeline.lib.training.worker import STEP, WARNING

WORKER_MODULE = "ft_pipeline.lib.training.worker"
TAIL_LINES = 60
JOB_FILE, RESULT_FILE = "job.json", "result.json"


class WorkersFailed(RuntimeError):
    """The training processes exited with an error; the message ends with their output."""


def worker_command(nproc: int, job_file: Path) -> list[str]:
    """torchrun, as `python -m torch.distributed.run` of this interpreter (no PATH lookup)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a local rendezvous on a free port: one machine, N processes
        f"--nproc_per_node={nproc}",
        "-m",
        WORKER_MODULE,
        str(job_file),
    ]


def worker_env(nproc: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment, plus: this very ft_pipeline first on the path (the workers
    run the code the parent keyed the adapter by), unbuffered output (lines arrive as they
    are printed), and the cores split between the processes unless OMP_NUM_THREADS is set."""
    env = dict(os.environ if base is None else base)
    root = str(Path(ft_pipeline.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    env.setdefault("OMP_NUM_THREADS", str(max(1, (cores or 1) // nproc)))
    return env


def write_job(folder: Path, job: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RESULT_FILE).unlink(missing_ok=True)
    path = folder / JOB_FILE
    path.write_text(json.dumps({**job, "result": str(folder / RESULT_FILE)}))
    return path


def stream(cmd: list[str], env: dict[str, str], on_line: Callable[[str], None]) -> None:
    """Run `cmd`, passing each output line (stdout and stderr) to `on_line` as it comes."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env=env,
        start_new_session=True,  # its own process group, so a stop reaches every worker
    )
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            tail.append(line)
            on_line(line)
        code = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    if code != 0:
        raise WorkersFailed(
            f"training processes exited with code {code}; last output:\n" + "\n".join(tail)
        )


def _stop(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the process group (torchrun passes it on to the workers), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


def train_in_workers(
    job: dict[str, Any],
    nproc: int,
    folder: Path,
    *,
    log: Callable[[str], None],
    warn: Callable[[str], None],
    on_log: Callable[[StepLog], None],
) -> TrainResult:
    """Train with `nproc` processes on this machine; the result rank 0 wrote."""
    job_file = write_job(folder, job)

    def on_line(line: str) -> None:
        if line.startswith(STEP):
            on_log(StepLog(**json.loads(line[len(STEP) :])))
        elif line.startswith(WARNING):
            warn(line[len(WARNING) :])
        elif line.strip():
            log(line)

    stream(worker_command(nproc, job_file), worker_env(nproc), on_line)
    data = json.loads((folder / RESULT_FILE).read_text())
    data["adapter_dir"] = Path(data["adapter_dir"])
    fields = {f.name for f in dataclasses.fields(TrainResult)}
    return TrainResult(**{k: v for k, v in data.items() if k in fields})
