"""deployed_model: merged weights, a registered MLflow pyfunc, the champion alias."""

import dagster as dg

from ft_pipeline.defs.conditions import downstream_condition
from ft_pipeline.defs.evaluation.assets import evaluation_report
from ft_pipeline.defs.lineage import latest_adapter_key
from ft_pipeline.defs.resources import (
    MlflowResource,
    RecipeResource,
    StateResource,
    dagster_run_finished,
    run_tags,
)


@dg.asset(
    deps=[evaluation_report],
    group_name="deployment",
    kinds={"mlflow", "huggingface"},
    automation_condition=downstream_condition,
)
def deployed_model(
    context: dg.AssetExecutionContext,
    state: StateResource,
    recipe: RecipeResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """The fine-tuned model, merged and registered; `champion` points at it.

    Runs only after the promotion gate passed. The previous champion stays registered for
    `ft-pipeline rollback`. Serve it with `mlflow models serve -m models:/<name>@champion`.
    The alias moves last: a deployment killed midway leaves the previous champion served,
    and the next one cleans up after it and finishes.
    """
    from ft_pipeline.lib.deployment.job import deploy
    from ft_pipeline.lib.evaluation.job import read_result
    from ft_pipeline.lib.training.adapter_info import read_info

    r = recipe.load()
    paths = state.paths()
    if r.experiment is not None:  # the comparison's winner (defs/evaluation/experiment.py)
        from ft_pipeline.defs.evaluation.experiment import winner_key

        variant, key = winner_key(context.instance)
        r = recipe.load(variant)  # the winner deploys with its own knobs (base, head, LoRA)
    else:
        key = latest_adapter_key(context.instance)
    result = read_result(paths.reports(r.name) / key)
    if not result or not result.get("gate", {}).get("passed"):
        raise dg.Failure(description=f"adapter {key} has not passed the promotion gate")
    info = read_info(paths.adapters(r.name) / key)
    tracker = mlflow.tracker(state, r)
    outcome = deploy(
        paths,
        r,
        key,
        info,
        result,
        tracker,
        mlflow.uri(state),
        tags=run_tags(context),
        log=context.log.info,
        is_finished=dagster_run_finished(context.instance),
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(f"{key}-v{outcome['version']}"),
        metadata={
            "registered_model": r.model_name,
            "version": outcome["version"],
            "previous_champion": outcome["previous"] or "none",
            "reused_version": outcome["reused"],
            "merge_max_abs_diff": outcome["merge_diff"],
            "model_folder": dg.MetadataValue.path(outcome["folder"]),
            "serve": f"mlflow models serve -m models:/{r.model_name}@champion --env-manager local",
        },
    )
