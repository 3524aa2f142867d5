"""A throwaway PostgreSQL server and MLflow tracking server on loopback, for the tests.

PostgreSQL is Debian's (`make postgres-deps` installs it): `initdb` into a temporary data
directory, then `pg_ctl start` on a free loopback port with its socket in that directory.
PostgreSQL refuses to run as root, so as root both run as the `postgres` account that
Debian's package creates. Everything is stopped and the directory removed on exit.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ft_pipeline_tests.dagster_dev import free_port

MISSING = (
    "PostgreSQL's initdb/pg_ctl not found: `make test` installs Debian's postgresql "
    "(apt-get install postgresql); deselect with PYTEST_ARGS='-m \"not postgres\"'"
)


def postgres_bin_dir() -> Path | None:
    """The folder of initdb, pg_ctl and postgres: from PATH, else /usr/lib/postgresql/*/bin."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0)
    )
    candidates += [Path(p) for p in reversed(versions)]
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _as_server_user() -> list[str]:
    """The command prefix that runs the server's tools as a non-root user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise RuntimeError("running as root and there is no `postgres` account") from exc
    return ["runuser", "-u", "postgres", "--"]


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str
    root: Path

    def connect(self, db: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=db
        )

    def create_database(self, name: str) -> None:
        conn = self.connect()
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def query(self, db: str, sql: str, params: tuple = ()) -> list[tuple]:
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    def env(self, db: str) -> dict[str, str]:
        """The variables dagster.postgres.yaml and `ft-pipeline mlflow-server` read."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": db,
        }


@contextlib.contextmanager
def postgres_server(bin_dir: Path) -> Iterator[Postgres]:
    """initdb + pg_ctl start in a temporary folder; pg_ctl stop and removal on exit."""
    prefix = _as_server_user()
    # As root, under /tmp itself: the `postgres` account must be able to reach the folder.
    root = Path(tempfile.mkdtemp(prefix="ft-pg-", dir="/tmp" if prefix else None))
    data, log = root / "data", root / "server.log"
    password = secrets.token_urlsafe(16)
    started = False
    try:
        (root / "pwfile").write_text(password + "\n")
        if prefix:
            shutil.chown(root, "postgres")
            shutil.chown(root / "pwfile", "postgres")
        initdb = ["-D", str(data), "-U", "ft", "--no-locale", "-E", "UTF8"]
        initdb += ["--auth=scram-sha-256", f"--pwfile={root / 'pwfile'}"]
        subprocess.run(
            [*prefix, str(bin_dir / "initdb"), *initdb],
            check=True,
            capture_output=True,
            timeout=120,
        )
        (root / "pwfile").unlink()
        port = free_port()
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        started = True
        start = ["-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"]
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), *start],
            check=True,
            capture_output=True,
            timeout=90,
        )
        yield Postgres("127.0.0.1", port, "ft", password, root)
    except subprocess.CalledProcessError as exc:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"{exc.cmd[len(prefix)]} failed: {exc.stderr!r}\n{tail}") from exc
    finally:
        if started:
            stop = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "stop"]
            done = subprocess.run([*stop, "-m", "fast"], capture_output=True, timeout=90)
            if done.returncode != 0 and (data / "postmaster.pid").exists():
                subprocess.run([*stop, "-m", "immediate"], capture_output=True, timeout=90)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def process_group(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen]:
    """A command in its own process group, stopped (SIGTERM, then SIGKILL) with its children."""
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and _group_alive(process):
                time.sleep(0.2)
            if not _group_alive(process):
                break


def _group_alive(process: subprocess.Popen) -> bool:
    """Is any process of the group left (its leader reaped first, so a zombie does not count)?"""
    process.poll()
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Poll `url` until it answers 200; fail with the log if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited:\n{log.read_text(errors='replace')[-4000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {url}:\n{log.read_text(errors='replace')[-4000:]}")
