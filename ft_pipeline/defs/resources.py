"""Resources: the state folder and the active recipe."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import dagster as dg

from ft_pipeline.lib.data.sources import incoming_dir
from ft_pipeline.lib.state.paths import StatePaths, default_home, default_recipe_path
from ft_pipeline.recipe import Recipe, load_recipe

if TYPE_CHECKING:
    from ft_pipeline.lib.state.tracking import Tracker


class StateResource(dg.ConfigurableResource):
    """The state folder that holds every file a run writes (default `$FT_HOME` or `.ft_home/`)."""

    root: str = ""

    def paths(self) -> StatePaths:
        return StatePaths(Path(self.root).resolve() if self.root else default_home()).ensure()


class RecipeResource(dg.ConfigurableResource):
    """The active recipe (default `$FT_RECIPE` or `recipes/tweet_sentiment.yaml`)."""

    path: str = ""

    def recipe_path(self) -> Path:
        return Path(self.path).resolve() if self.path else default_recipe_path()

    def load(self, variant: str | None = None) -> Recipe:
        """The recipe, or with `variant` (a partition key) that experiment variant's."""
        recipe = load_recipe(self.recipe_path())
        if variant is None or recipe.experiment is None:
            return recipe
        by_name = {v.name: v.recipe for v in recipe.variants()}
        if variant not in by_name:
            raise dg.Failure(
                description=f"variant {variant!r} is not in the experiment of "
                f"{self.recipe_path()} (its variants: {', '.join(by_name)}); reload the code "
                "location after editing the experiment section"
            )
        return by_name[variant]

    def base_dir(self) -> Path:
        """Relative source paths in the recipe are resolved against the recipe's folder."""
        return self.recipe_path().parent

    def landing(self, state: StateResource) -> Path:
        return incoming_dir(self.load(), state.paths().incoming, self.base_dir())


TRACKING_URI_ENV = "FT_MLFLOW_TRACKING_URI"


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking: default `sqlite:///<state>/mlflow.db`, artifacts under the state folder.

    For a shared server set `FT_MLFLOW_TRACKING_URI` (or `tracking_uri`; MLflow's own
    `MLFLOW_TRACKING_URI` is left alone, since MLflow sets it process-wide). Credentials go in
    MLflow's own environment variables (`MLFLOW_TRACKING_TOKEN`, or `MLFLOW_TRACKING_USERNAME`
    and `MLFLOW_TRACKING_PASSWORD`), never in the URI: resource config is shown in the UI.
    """

    tracking_uri: str = ""
    artifact_root: str = ""

    def uri(self, state: StateResource) -> str:
        uri = self.tracking_uri or os.environ.get(TRACKING_URI_ENV) or ""
        return checked_tracking_uri(uri) if uri else state.paths().mlflow_uri

    def tracker(self, state: StateResource, recipe: Recipe) -> "Tracker":
        from ft_pipeline.lib.state.tracking import Tracker  # mlflow loads only when a run tracks

        paths = state.paths()
        root = Path(self.artifact_root) if self.artifact_root else paths.mlflow_artifacts
        return Tracker.connect(self.uri(state), f"ft_pipeline/{recipe.name}", root)


def checked_tracking_uri(uri: str) -> str:
    """The URI, unless it carries credentials (which would then be shown and logged)."""
    parts = urlsplit(uri)
    if parts.password is not None or (parts.username and parts.scheme.startswith("http")):
        safe = parts._replace(netloc=parts.hostname or "").geturl()
        raise ValueError(
            f"the MLflow tracking URI {safe} carries credentials; remove them from the URI and "
            "set MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD) in the environment instead"
        )
    return uri


class TrainerResource(dg.ConfigurableResource):
    """Where and how training runs: device (`auto` picks CUDA when present).

    `fail_after_steps` injects a crash after N optimizer steps, for resume drills and tests.
    """

    device: str = "auto"
    fail_after_steps: int | None = None


def dagster_run_finished(instance: dg.DagsterInstance) -> Callable[[str], bool]:
    """For the MLflow reaper: has this Dagster run ended (or is it unknown)?"""

    def finished(run_id: str) -> bool:
        run = instance.get_run_by_id(run_id)
        return run is None or run.is_finished

    return finished


def run_tags(context: dg.AssetExecutionContext) -> dict[str, str]:
    """Tags every MLflow run carries: the Dagster run, asset and partition."""
    tags = {
        "dagster.run_id": context.run.run_id,
        "dagster.asset": context.asset_key.to_user_string(),
    }
    if context.has_partition_key:
        tags["dagster.partition"] = context.partition_key
    return tags
