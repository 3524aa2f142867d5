"""An MLflow tracking server whose backend store is PostgreSQL (docs/scaling-out.md).

The server reaches PostgreSQL with the same environment variables as Dagster's PostgreSQL
profile (`dagster.postgres.yaml`): DAGSTER_PG_HOST, DAGSTER_PG_PORT (5432), DAGSTER_PG_USER and
DAGSTER_PG_PASSWORD, and uses the database FT_MLFLOW_PG_DB (`mlflow`), which must exist. The
password goes to libpq as PGPASSWORD, never into the store URI (MLflow logs and shows that).
Runs, metrics, the model registry and the `champion` alias live in that database; artifacts
stay under the state folder (`<state>/mlartifacts`), or wherever experiments point.
The pipeline reaches the server with FT_MLFLOW_TRACKING_URI=http://HOST:PORT.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

MLFLOW_DB_ENV = "FT_MLFLOW_PG_DB"
# psycopg2 is what dagster-postgres installs; SQLAlchemy 2.1 maps a bare `postgresql://` to
# psycopg 3, which is not installed.
SCHEME = "postgresql+psycopg2"


def backend_store_uri(env: Mapping[str, str]) -> str:
    """`postgresql+psycopg2://user@host:port/db`, without the password."""
    missing = [name for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER") if not env.get(name)]
    if missing:
        raise ValueError(
            f"set {' and '.join(missing)} (and DAGSTER_PG_PORT, DAGSTER_PG_PASSWORD) to reach "
            "PostgreSQL; docs/scaling-out.md"
        )
    user = quote(env["DAGSTER_PG_USER"], safe="")
    port = env.get("DAGSTER_PG_PORT") or "5432"
    db = quote(env.get(MLFLOW_DB_ENV) or "mlflow", safe="")
    return f"{SCHEME}://{user}@{env['DAGSTER_PG_HOST']}:{port}/{db}"


def server_command(
    env: Mapping[str, str],
    artifact_root: Path,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int | None = None,
    allowed_hosts: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The `mlflow server` command line and environment for the PostgreSQL store.

    MLflow's job runner (GenAI scorers, not used here) is off unless the environment turns
    it on: it would start a dozen extra processes.
    """
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri(env),
        "--default-artifact-root",
        str(artifact_root),
        "--host",
        host,
        "--port",
        str(port),
    ]
    if workers:
        argv += ["--workers", str(workers)]
    if allowed_hosts:  # Host headers besides localhost and private IPs (a cluster's Service)
        argv += ["--allowed-hosts", allowed_hosts]
    child = dict(env)
    if env.get("DAGSTER_PG_PASSWORD") and not env.get("PGPASSWORD"):
        child["PGPASSWORD"] = env["DAGSTER_PG_PASSWORD"]
    child.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return argv, child
