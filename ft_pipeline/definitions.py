"""The Dagster code location: assets, checks and resources of the pipeline."""

import dagster as dg

from ft_pipeline.defs.automation import (
    build_automation_sensor,
    build_landing_sensor,
    ingest_job,
    retrain_job,
    retrain_schedule,
)
from ft_pipeline.defs.data import assets as data_assets
from ft_pipeline.defs.data import checks as data_checks
from ft_pipeline.defs.deployment import assets as deployment_assets
from ft_pipeline.defs.evaluation import assets as evaluation_assets
from ft_pipeline.defs.evaluation.experiment import with_experiment
from ft_pipeline.defs.executors import executor_from_env
from ft_pipeline.defs.resources import (
    MlflowResource,
    RecipeResource,
    StateResource,
    TrainerResource,
)
from ft_pipeline.defs.training import adapter as adapter_assets
from ft_pipeline.defs.training import assets as training_assets
from ft_pipeline.defs.training import checks as training_checks

_modules = [
    data_assets,
    data_checks,
    training_assets,
    training_checks,
    adapter_assets,
    evaluation_assets,
    deployment_assets,
]

# Sensor intervals and the retraining cron come from the active recipe's `automation` section;
# its `experiment` section, if any, partitions the model assets by variant.
_recipe = RecipeResource().load()
_automation = _recipe.automation
_assets, _checks = with_experiment(
    dg.load_assets_from_modules(_modules), dg.load_asset_checks_from_modules(_modules), _recipe
)

defs = dg.Definitions(
    assets=_assets,
    asset_checks=_checks,
    jobs=[ingest_job, retrain_job],
    sensors=[
        build_landing_sensor(_automation.landing_interval_s),
        build_automation_sensor(_automation.automation_interval_s),
    ],
    schedules=[retrain_schedule(_automation.retrain_cron, [v.name for v in _recipe.variants()])],
    # One process per run, not per step: a step costs no extra interpreter start-up (about
    # 6 s of imports here), and the `training` pool still serialises training steps.
    # FT_EXECUTOR_CONFIG=deploy/k8s/executor.yaml (or deploy/celery/...) runs each step in its
    # own Kubernetes job (or Celery task) instead: docs/scaling-out.md.
    executor=executor_from_env(),
    resources={
        "state": StateResource(),
        "recipe": RecipeResource(),
        "mlflow": MlflowResource(),
        "trainer": TrainerResource(),
    },
)
