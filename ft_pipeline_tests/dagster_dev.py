"""`dagster dev` (webserver + daemon + code server) in a subprocess, for the live tests.

The server runs the project's real `workspace.yaml` and `dagster.yaml` with a temporary
state folder and recipe, on a free loopback port. The tests read the same SQLite instance
the daemon writes to.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from ft_pipeline.lib.state.paths import PROJECT_ROOT

LOCATION_QUERY = """
{ workspaceOrError { __typename ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DagsterDev:
    url: str
    home: Path
    log: Path
    process: subprocess.Popen

    def graphql(self, query: str, variables: dict | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float, every=2.0) -> Any:
        """Poll `probe` until it returns something truthy; fail with the server log if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_tail()
                raise AssertionError(f"dagster dev exited while waiting for {what}:\n{tail}")
            value = probe()
            if value:
                return value
            time.sleep(every)
        tail = self.log_tail()
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")

    def location_loaded(self) -> bool:
        try:
            data = self.graphql(LOCATION_QUERY)["data"]["workspaceOrError"]
        except OSError:
            return False
        entries = data.get("locationEntries") or []
        for entry in entries:
            loaded = entry.get("locationOrLoadError") or {}
            if loaded.get("__typename") == "PythonError":
                raise AssertionError(f"code location failed to load: {loaded.get('message')}")
        return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)


@contextlib.contextmanager
def dagster_dev(root: Path, recipe: Path, timeout: float = 180) -> Iterator[DagsterDev]:
    """Start `dagster dev` with state under `root`; stop its whole process group after."""
    home = root / "home"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "FT_HOME": str(home),
        "FT_RECIPE": str(recipe),
        "DAGSTER_HOME": str(dagster_home),
        "HF_HUB_OFFLINE": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = root / "dagster-dev.log"
    command = [
        *(sys.executable, "-m", "dagster", "dev"),
        *("-w", str(PROJECT_ROOT / "workspace.yaml")),
        *("-h", "127.0.0.1", "-p", str(port)),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = DagsterDev(f"http://127.0.0.1:{port}", home, log, process)
    try:
        server.wait_for("the code location to load", server.location_loaded, timeout)
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the session (webserver, daemon, code server, runs), SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def open_instance(server: DagsterDev) -> dg.DagsterInstance:
    """The instance the server's daemon writes to (SQLite under the temporary home)."""
    return dg.DagsterInstance.from_config(str(server.home / "dagster"))
