"""The training asset on 2 processes: it launches torchrun, streams the workers' lines into
the Dagster log, and keeps the MLflow run in the parent.

The asset's path (launch, streaming, the parent's MLflow run, reuse) is the same for DDP and
FSDP; it runs under FSDP, which adds sharding on top. What differs between the strategies is
tested below the asset: training/test_distributed.py (DDP) and test_distributed_fsdp.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from ft_pipeline_tests.conftest import fixture_rows, write_csv, write_recipe


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fsdp"])
def test_asset_trains_on_two_processes_and_streams_their_progress(
    tmp_path, tiny_model_dir, strategy
):
    import dagster as dg

    from ft_pipeline_tests.training.test_assets import _meta, model_project

    training = {
        "learning_rate": 0.01,
        "batch_size": 8,
        "max_steps": 8,
        "eval_every": 4,
        "checkpoint_every": 4,
        "early_stopping_patience": None,
        "distributed": {"strategy": strategy, "processes": 2},
    }
    write_csv(tmp_path / "data" / "corpus.csv", fixture_rows(40))
    recipe = write_recipe(
        tmp_path,
        tiny_model_dir,
        ["data/corpus.csv"],
        model={"head": "classifier"},
        training=training,
        lora={"r": 4, "alpha": 8, "dropout": 0.05},
    )
    adapter = dg.AssetSelection.assets("fine_tuned_adapter")
    with model_project(tmp_path, recipe) as project:
        result = project.materialize(adapter)
        assert result.success
        logged = [e.user_message for e in project.instance.all_logs(result.run_id)]
        again = project.materialize(adapter)

    meta = _meta(result, "fine_tuned_adapter")
    assert meta["processes"] == 2 and meta["steps"] == 8 and meta["reused"] is False
    assert 100 < meta["peak_rss_mb"] < 8 * 1024  # the workers' peak, not 0 or unset
    assert (Path(meta["path"]) / "adapter_model.safetensors").is_file()
    assert meta["best_val_loss"] < meta["initial_val_loss"]
    # The workers' output, streamed into the Dagster log as it came.
    assert any(f"{strategy} on 2 processes" in m for m in logged)
    for rank in (0, 1):  # one line each, whole: two processes' lines do not interleave
        start = f"worker rank {rank}/2 on cpu, {strategy}, "
        assert len([m for m in logged if m.startswith(start)]) == 1
    # Under FSDP each process holds half the weights (the classifier's body and head).
    cut = [m for m in logged if "FSDP units: 2 x LlamaDecoderLayer" in m]
    assert len(cut) == (2 if strategy == "fsdp" else 0)
    progress = [m for m in logged if m.startswith("step ") and "/8 loss" in m]
    assert len(progress) == 8 and "val_loss" in progress[-1]
    # The parent kept the MLflow run: params, a metric per step, the adapter artifact.
    run = project.client.get_run(meta["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["strategy"] == strategy and run.data.params["processes"] == "2"
    assert len(project.client.get_metric_history(run.info.run_id, "grad_norm")) == 8
    assert len(project.client.get_metric_history(run.info.run_id, "train_loss")) == 8
    assert _meta(again, "fine_tuned_adapter")["reused"] is True
