"""The Dagster code location: assets, checks and resources of the pipeline."""

import dagster as dg

from ft_pipeline.defs.data import assets as data_assets
from ft_pipeline.defs.data import checks as data_checks
from ft_pipeline.defs.resources import RecipeResource, StateResource
from ft_pipeline.defs.training import assets as training_assets
from ft_pipeline.defs.training import checks as training_checks

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([data_assets, training_assets]),
    asset_checks=dg.load_asset_checks_from_modules([data_checks, training_checks]),
    resources={"state": StateResource(), "recipe": RecipeResource()},
)
