"""The state folder: every file a run writes lives under one root.

Deleting the folder resets the project. The root defaults to `.ft_home/` in the checkout
and is overridden by the `FT_HOME` environment variable.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
HOME_ENV = "FT_HOME"
RECIPE_ENV = "FT_RECIPE"
DAGSTER_CONFIG_ENV = "FT_DAGSTER_CONFIG"
DEFAULT_RECIPE = PROJECT_ROOT / "recipes" / "tweet_sentiment.yaml"


def default_home() -> Path:
    """The state folder: $FT_HOME, else `.ft_home/` beside the project."""
    return Path(os.environ.get(HOME_ENV) or PROJECT_ROOT / ".ft_home").resolve()


def default_recipe_path() -> Path:
    """The active recipe: $FT_RECIPE, else the bundled tweet sentiment recipe."""
    return Path(os.environ.get(RECIPE_ENV) or DEFAULT_RECIPE).resolve()


def slug(key: str) -> str:
    """A filesystem-safe, collision-free name for a partition key."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_")[:60]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class StatePaths:
    """Named locations under the state folder."""

    root: Path

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def raw(self, partition: str) -> Path:
        return self.root / "data" / "raw" / f"{slug(partition)}.parquet"

    def clean(self, partition: str) -> Path:
        return self.root / "data" / "clean" / f"{slug(partition)}.parquet"

    def quarantine(self, partition: str) -> Path:
        return self.root / "data" / "quarantine" / f"{slug(partition)}.parquet"

    def tokenized(self, recipe_name: str) -> Path:
        return self.root / "data" / "tokenized" / recipe_name

    def partition_cache(self, recipe_name: str) -> Path:
        return self.root / "data" / "cache" / recipe_name

    def adapters(self, recipe_name: str) -> Path:
        return self.root / "adapters" / recipe_name

    def reports(self, recipe_name: str) -> Path:
        return self.root / "reports" / recipe_name

    def deployments(self, recipe_name: str) -> Path:
        return self.root / "deployments" / recipe_name

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    def ensure(self) -> StatePaths:
        for d in (self.dagster_home, self.incoming, self.models, self.root / "data"):
            d.mkdir(parents=True, exist_ok=True)
        return self


def project_file(name: str) -> Path:
    """A settings file: an absolute path, else relative to the working directory, else to the
    project (so `dagster.postgres.yaml` works from anywhere). It must exist."""
    path = Path(name).expanduser()
    for candidate in [path] if path.is_absolute() else [Path.cwd() / path, PROJECT_ROOT / path]:
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"{name}: no such file (looked in {Path.cwd()} and {PROJECT_ROOT})")


def dagster_config_path() -> Path:
    """The Dagster instance settings: $FT_DAGSTER_CONFIG, else the project's dagster.yaml.

    `FT_DAGSTER_CONFIG=dagster.postgres.yaml` selects the PostgreSQL profile.
    """
    name = os.environ.get(DAGSTER_CONFIG_ENV)
    return project_file(name) if name else PROJECT_ROOT / "dagster.yaml"


def prepare_dagster_home(paths: StatePaths, template: Path | None = None) -> Path:
    """Copy the instance settings (`dagster_config_path()`) into DAGSTER_HOME as dagster.yaml."""
    paths.ensure()
    template = template or dagster_config_path()
    target = paths.dagster_home / "dagster.yaml"
    if template.is_file() and (
        not target.is_file() or target.read_bytes() != template.read_bytes()
    ):
        shutil.copyfile(template, target)
    return paths.dagster_home


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Content hash of a file: the data version of a raw partition."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
