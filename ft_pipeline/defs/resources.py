"""Resources: the state folder and the active recipe."""

from pathlib import Path

import dagster as dg

from ft_pipeline.lib.sources import incoming_dir
from ft_pipeline.lib.state import StatePaths, default_home, default_recipe_path
from ft_pipeline.recipe import Recipe, load_recipe


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

    def load(self) -> Recipe:
        return load_recipe(self.recipe_path())

    def base_dir(self) -> Path:
        """Relative source paths in the recipe are resolved against the recipe's folder."""
        return self.recipe_path().parent

    def landing(self, state: StateResource) -> Path:
        return incoming_dir(self.load(), state.paths().incoming, self.base_dir())
