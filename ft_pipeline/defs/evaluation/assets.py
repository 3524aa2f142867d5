"""evaluation_report: base vs fine-tuned vs TF-IDF on the held-out test split."""

import base64
from pathlib import Path

import dagster as dg

from ft_pipeline.defs.conditions import downstream_condition
from ft_pipeline.defs.explained import explained
from ft_pipeline.defs.lineage import latest_adapter_key, partition_of
from ft_pipeline.defs.resources import (
    MlflowResource,
    RecipeResource,
    StateResource,
    TrainerResource,
    run_tags,
)
from ft_pipeline.defs.training.adapter import fine_tuned_adapter


def _inline_images(report: str, folder: Path) -> str:
    """The report with its PNG links inlined, so the Dagster UI shows the plots."""
    for png in folder.glob("*.png"):
        data = base64.b64encode(png.read_bytes()).decode()
        report = report.replace(f"]({png.name})", f"](data:image/png;base64,{data})")
    return report


@dg.asset(
    deps=[fine_tuned_adapter],
    group_name="evaluation",
    kinds={"pytorch", "scikitlearn", "mlflow"},
    pool="training",
    automation_condition=downstream_condition,
)
def evaluation_report(
    context: dg.AssetExecutionContext,
    state: StateResource,
    recipe: RecipeResource,
    mlflow: MlflowResource,
    trainer: TrainerResource,
) -> dg.MaterializeResult:
    """Base model (zero-shot, same prompt), fine-tuned model and a TF-IDF baseline on the
    same test rows: metrics, confusion matrices, slices, bootstrap CI, and the gate."""
    from ft_pipeline.lib.data.tokenized import load_tokenized
    from ft_pipeline.lib.evaluation.job import (
        EVALUATION_KEY_COVERS,
        evaluate_or_reuse,
        log_evaluation,
        test_indices,
        write_report,
    )
    from ft_pipeline.lib.evaluation.promotion import compare_with_champion, gate
    from ft_pipeline.lib.training.adapter_info import read_info

    r = recipe.load(partition_of(context))
    paths = state.paths()
    key = latest_adapter_key(context.instance, partition_of(context))
    folder = paths.adapters(r.name) / key
    info = read_info(folder)
    if info is None:
        raise dg.Failure(
            description=f"adapter {key} is incomplete: re-materialize fine_tuned_adapter"
        )
    out_dir = paths.reports(r.name) / key
    dataset, _ = load_tokenized(paths.tokenized(r.dataset_name))
    result, eval_key, reused = evaluate_or_reuse(
        folder / "adapter",
        r,
        dataset,
        paths.models,
        out_dir,
        log=context.log.info,
        device=trainer.device,
    )
    tracker = mlflow.tracker(state, r)
    result.update(adapter_key=key, data_version=info["data_version"], evaluation_key=eval_key)
    registered = compare_with_champion(
        result,
        r,
        dataset,
        test_indices(dataset, r),
        tracker.client,
        mlflow.uri(state),
        paths.reports(r.name) / "champions",
        context.log.info,
    )
    result["gate"] = gate(result, r, registered)
    report = write_report(result, out_dir)
    run_id = log_evaluation(tracker, r, result, info, out_dir, run_tags(context))
    metric = result["gate"]["metric"]
    scores = {name: float(m[metric]) for name, m in result["models"].items()}
    context.log.info(
        f"report: {report}; {metric}: {scores}; gate passed: {result['gate']['passed']}"
    )
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(_inline_images(report.read_text(), out_dir)),
            "report_path": dg.MetadataValue.path(str(report)),
            **{f"{metric}_{name.replace('-', '_')}": v for name, v in scores.items()},
            "gate_passed": result["gate"]["passed"],
            "gate_reasons": result["gate"]["reasons"],
            "adapter_key": key,
            "reused": reused,
            "evaluation_key": eval_key,
            "key_covers": EVALUATION_KEY_COVERS,
            "mlflow_run_id": run_id,
        },
    )


@dg.asset_check(asset=evaluation_report, blocking=True)
def evaluation_report_promotion_gate(
    context: dg.AssetCheckExecutionContext, state: StateResource, recipe: RecipeResource
) -> dg.AssetCheckResult:
    """The fine-tuned model beats the base by the recipe's margin and is not worse than the
    current champion beyond its confidence interval."""
    from ft_pipeline.lib.evaluation.job import read_result

    r = recipe.load(partition_of(context))
    key = latest_adapter_key(context.instance, partition_of(context))
    result = read_result(state.paths().reports(r.name) / key) or {}
    outcome = result.get("gate", {"passed": False, "reasons": ["no evaluation result"]})
    ev = r.evaluation
    limit = f"gain over base: lower CI bound >= evaluation.min_f1_gain ({outcome.get('margin')})"
    limit += (
        f"; against the champion: lower bound > -evaluation.max_regression ({-ev.max_regression})"
    )
    if ev.must_beat_baseline:
        limit += "; evaluation.must_beat_baseline: lower bound over TF-IDF > 0"
    return explained(
        "evaluation_report_promotion_gate",
        bool(outcome["passed"]),
        measured="; ".join(outcome["reasons"]) or "every rule met",
        limit=limit,
        fix="train a better model (more rows or steps: training.*, another base: model.base), "
        "or, when the gate is stricter than you need, lower the margin in the recipe",
        look=f"the report {state.paths().reports(r.name) / key / 'report.md'}",
        metadata={
            "reasons": outcome["reasons"],
            "champion": outcome.get("champion", {}),
            "adapter_key": key,
        },
    )
