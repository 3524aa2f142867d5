"""The retraining schedule: skips until there is a tokenized dataset, then requests a run."""

from __future__ import annotations

import dagster as dg

from ft_pipeline.defs.automation import MODEL_ASSETS, retrain_schedule


def test_schedule_skips_until_a_tokenized_dataset_exists_then_requests_retraining():
    schedule = retrain_schedule("0 3 * * 1")
    assert schedule.cron_schedule == "0 3 * * 1"
    assert schedule.execution_timezone == "UTC"
    with dg.instance_for_test() as instance:
        first = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
        assert not first.run_requests
        assert "tokenized_dataset has not been materialized" in first.skip_message
        instance.report_runless_asset_event(dg.AssetMaterialization("tokenized_dataset"))
        second = schedule.evaluate_tick(dg.build_schedule_context(instance=instance))
        assert len(second.run_requests) == 1 and second.skip_message is None


def test_retrain_job_targets_the_model_assets_in_one_process():
    from ft_pipeline.definitions import defs

    job = defs.resolve_job_def("retrain")
    assert job.executor_def.name == "in_process"
    selected = {key.to_user_string() for key in job.asset_layer.selected_asset_keys}
    assert selected == set(MODEL_ASSETS)


def test_an_experiments_schedule_requests_each_variants_training_and_evaluation():
    from datetime import UTC, datetime
    from pathlib import Path

    from ft_pipeline.definitions import defs
    from ft_pipeline.defs.evaluation.experiment import with_experiment
    from ft_pipeline.recipe import load_recipe

    shipped = Path(__file__).resolve().parents[2] / "recipes" / "tweet_sentiment_experiment.yaml"
    recipe = load_recipe(shipped)
    names = [v.name for v in recipe.variants()]
    schedule = retrain_schedule("0 3 * * 1", names)
    assets, checks = with_experiment(list(defs.assets), list(defs.asset_checks), recipe)
    repository = dg.Definitions(
        assets=assets, asset_checks=checks, schedules=[schedule], resources=defs.resources
    ).get_repository_def()
    tick = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("tokenized_dataset"))
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=repository
        )
        requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == names
    for request in requests:  # the comparison and the deployment follow by automation
        assert request.asset_selection == [
            dg.AssetKey("fine_tuned_adapter"),
            dg.AssetKey("evaluation_report"),
        ]
    assert len({r.run_key for r in requests}) == len(names)
