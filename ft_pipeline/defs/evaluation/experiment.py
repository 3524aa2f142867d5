"""experiment_comparison: an experiment's variants side by side, and the one to deploy.

Only in the code location of a recipe with an `experiment:` section. There,
`fine_tuned_adapter` and `evaluation_report` are partitioned by variant (`with_experiment`),
and `deployed_model` reads the winner from this asset instead of the latest adapter.
"""

import base64

import dagster as dg

from ft_pipeline.defs.evaluation.assets import evaluation_report
from ft_pipeline.defs.explained import explained
from ft_pipeline.defs.lineage import latest_adapter_key
from ft_pipeline.defs.resources import MlflowResource, RecipeResource, StateResource, run_tags
from ft_pipeline.recipe import Recipe

VARIANT_ASSETS = ("fine_tuned_adapter", "evaluation_report")
COMPARISON = dg.AssetKey("experiment_comparison")

# Eager, without the upstream blocking checks: a variant that fails its own promotion gate is
# still compared (that is what the table is for); eager waits for every variant to exist.
_condition = dg.AutomationCondition.eager().with_label("every variant evaluated")


@dg.asset(
    deps=[evaluation_report],
    group_name="evaluation",
    kinds={"mlflow", "pandas"},
    automation_condition=_condition,
)
def experiment_comparison(
    context: dg.AssetExecutionContext,
    state: StateResource,
    recipe: RecipeResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """Every variant's evaluation on the same test rows: a table and a plot of the gate
    metric with its CI against training CPU-minutes (TF-IDF on all training rows and the
    zero-shot base as reference lines), the winner by the stated rule, and an MLflow parent
    run with one child run per variant."""
    from ft_pipeline.lib.evaluation.experiment import PLOT_FILE, log_comparison, write_comparison
    from ft_pipeline.lib.evaluation.experiment_job import compare_variants

    r = recipe.load()
    paths = state.paths()
    keys, missing = {}, []
    for variant in r.variants():
        try:
            keys[variant.name] = latest_adapter_key(context.instance, variant.name)
        except dg.Failure:
            missing.append(variant.name)
    if missing:
        raise dg.Failure(
            description=f"variants not trained yet: {', '.join(missing)}; materialize "
            "fine_tuned_adapter and evaluation_report for them first"
        )
    comparison = compare_variants(paths, r, keys, log=context.log.info)
    out_dir = paths.reports(r.name) / "experiment"
    table = write_comparison(comparison, out_dir)
    parent = log_comparison(mlflow.tracker(state, r), comparison, out_dir, run_tags(context))
    png = base64.b64encode((out_dir / PLOT_FILE).read_bytes()).decode()
    shown = table.read_text().replace(f"]({PLOT_FILE})", f"](data:image/png;base64,{png})")
    context.log.info(f"experiment winner: {comparison['winner']} ({comparison['rule']})")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(comparison["winner_adapter_key"]),
        metadata={
            "comparison": dg.MetadataValue.md(shown),
            "winner": comparison["winner"],
            "winner_adapter_key": comparison["winner_adapter_key"],
            "winner_gate_passed": comparison["winner_gate_passed"],
            "winner_rule": comparison["rule"],
            "variants": len(comparison["variants"]),
            "mlflow_parent_run_id": parent,
            "path": dg.MetadataValue.path(str(table)),
        },
    )


@dg.asset_check(asset=experiment_comparison, blocking=True)
def experiment_comparison_winner_passed_gate(
    context: dg.AssetCheckExecutionContext,
) -> dg.AssetCheckResult:
    """The winner passed its own promotion gate (base, champion, baseline), so it may be
    deployed; otherwise nothing is."""
    event = context.instance.get_latest_materialization_event(COMPARISON)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    passed = bool(meta["winner_gate_passed"].value) if "winner_gate_passed" in meta else False
    winner = meta["winner"].value if "winner" in meta else "none"
    return explained(
        "experiment_comparison_winner_passed_gate",
        passed,
        measured=f"the winner {winner} "
        + ("passed its promotion gate" if passed else "did not pass its promotion gate"),
        limit="the winner passes evaluation_report_promotion_gate (base, champion, baseline)",
        fix="see the winner's evaluation_report_promotion_gate for the rule it missed; add "
        "variants that might pass it (experiment.variants / grid)",
        look=str(meta["path"].value) if "path" in meta else "experiment_comparison's metadata",
        metadata={"winner": winner},
    )


def winner_key(instance: dg.DagsterInstance) -> tuple[str, str]:
    """(variant, adapter key) of the latest comparison's winner."""
    event = instance.get_latest_materialization_event(COMPARISON)
    if event is None or event.asset_materialization is None:
        raise dg.Failure(description="experiment_comparison has not been materialized yet")
    meta = event.asset_materialization.metadata
    return meta["winner"].value, meta["winner_adapter_key"].value


def with_experiment(assets: list, checks: list, recipe: Recipe) -> tuple[list, list]:
    """The assets and checks of the code location: as given for a recipe without an
    experiment; with one, the variant assets partitioned by variant, the comparison added
    and `deployed_model` downstream of it."""
    names = [v.name for v in recipe.variants()]
    if not names:
        return assets, checks
    variants = dg.StaticPartitionsDefinition(names)
    out = []
    for asset in assets:
        key = asset.key.to_user_string()
        if key in VARIANT_ASSETS:
            asset = asset.map_asset_specs(lambda s: s.replace_attributes(partitions_def=variants))
        elif key == "deployed_model":
            asset = asset.map_asset_specs(lambda s: s.replace_attributes(deps=[COMPARISON]))
        out.append(asset)
    return [*out, experiment_comparison], [*checks, experiment_comparison_winner_passed_gate]
