"""An experiment through Dagster on a tiny random Llama: variants as partitions, shared data,
the comparison with its MLflow parent and children, and only the winner deployed."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
from mlflow.tracking import MlflowClient

from ft_pipeline.definitions import defs
from ft_pipeline.defs.evaluation.experiment import with_experiment
from ft_pipeline.defs.partitions import source_partitions
from ft_pipeline.defs.resources import (
    MlflowResource,
    RecipeResource,
    StateResource,
    TrainerResource,
)
from ft_pipeline.lib.deployment import registry
from ft_pipeline.lib.deployment.job import KEY_TAG
from ft_pipeline_tests.conftest import fixture_rows, write_csv, write_recipe
from ft_pipeline_tests.training.test_assets import KEY, LORA, TRAINING

EXPERIMENT = {
    "variants": [
        {"name": "slow", "training.learning_rate": 0.002},
        {"name": "fast", "training.learning_rate": 0.01},
        {"name": "short", "training.learning_rate": 0.01, "model.max_length": 63},
    ]
}
# Not about the gate: every variant may pass it, so the winner is deployed.
OPEN_GATE = {"min_f1_gain": -1.0, "max_regression": 1.0, "bootstrap_samples": 200}


def _meta(result, asset: str) -> dict:
    [event] = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in event.metadata.items()}


def test_variants_train_as_partitions_on_shared_data_and_only_the_winner_deploys(
    tmp_path: Path, tiny_model_dir: Path
):
    write_csv(tmp_path / "data" / "corpus.csv", fixture_rows(40))
    recipe_path = write_recipe(
        tmp_path,
        tiny_model_dir,
        ["data/corpus.csv"],
        training={**TRAINING, "max_steps": 6, "eval_every": 3},
        lora=LORA,
        evaluation=OPEN_GATE,
        experiment=EXPERIMENT,
    )
    recipe_res = RecipeResource(path=str(recipe_path))
    assets, checks = with_experiment(list(defs.assets), list(defs.asset_checks), recipe_res.load())
    graph = {a.key.to_user_string(): a for a in assets}
    assert graph["fine_tuned_adapter"].partitions_def.get_partition_keys() == [
        "slow",
        "fast",
        "short",
    ]
    assert graph["tokenized_dataset"].partitions_def is None  # the data stays shared
    assert (
        dg.AssetKey("experiment_comparison")
        in graph["deployed_model"].asset_deps[graph["deployed_model"].key]
    )
    state = StateResource(root=str(tmp_path / "home"))
    mlflow = MlflowResource()
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:

        def materialize(*names, partition=None):
            return dg.materialize(
                [*assets, *checks],
                selection=dg.AssetSelection.assets(*names),
                partition_key=partition,
                instance=instance,
                resources={
                    "state": state,
                    "recipe": recipe_res,
                    "mlflow": mlflow,
                    "trainer": TrainerResource(),
                },
                raise_on_error=False,
            )

        instance.add_dynamic_partitions(source_partitions.name, [KEY])
        assert materialize("raw_data", "cleaned_data", partition=KEY).success
        tokenized = materialize("tokenized_dataset")
        assert tokenized.success
        # One dataset per tokenization: the recipe's own, and the max_length 63 variant's.
        datasets = _meta(tokenized, "tokenized_dataset")["datasets"]
        assert len(datasets) == 2 and "fixture" in datasets
        paths = state.paths()
        assert all((paths.tokenized(name) / "manifest.json").is_file() for name in datasets)

        keys = {}
        for variant in ("slow", "fast", "short"):
            result = materialize("fine_tuned_adapter", "evaluation_report", partition=variant)
            assert result.success, variant
            adapter = _meta(result, "fine_tuned_adapter")
            assert adapter["reused"] is False and adapter["train_cpu_minutes"] > 0
            keys[variant] = adapter["adapter_key"]
        assert len(set(keys.values())) == 3
        # The base model and TF-IDF scored the shared rows once per tokenization, not per variant.
        cached = sorted(
            p.name.split("-")[0] for p in (paths.reports("fixture") / "baselines").iterdir()
        )
        assert cached == ["base", "base", "tfidf"]  # TF-IDF reads texts, not tokens

        again = materialize("fine_tuned_adapter", "evaluation_report", partition="fast")
        assert _meta(again, "fine_tuned_adapter")["reused"] is True
        assert _meta(again, "evaluation_report")["reused"] is True

        compared = materialize("experiment_comparison")
        assert compared.success
        meta = _meta(compared, "experiment_comparison")
        comparison = json.loads(Path(meta["path"]).with_name("comparison.json").read_text())
        lows = {v["name"]: v["low"] for v in comparison["variants"]}
        assert meta["winner"] == comparison["winner"] and set(lows) == set(keys)
        assert lows[meta["winner"]] >= max(lows.values()) - 0.001
        assert meta["winner_adapter_key"] == keys[meta["winner"]]
        assert "data:image/png;base64" in meta["comparison"] and "TF-IDF" in meta["comparison"]

        client = MlflowClient(mlflow.uri(state))
        parent = client.get_run(meta["mlflow_parent_run_id"])
        children = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        )
        assert sorted(c.data.params["variant"] for c in children) == sorted(keys)
        assert {c.data.tags["ft_pipeline.adapter_key"] for c in children} == set(keys.values())

        deployed = materialize("deployed_model")
        assert deployed.success
        champion = registry.champion(client, "ft-fixture")
        assert champion.tags[KEY_TAG] == keys[meta["winner"]]


def test_the_code_location_of_the_shipped_experiment_partitions_the_model_assets(tmp_path):
    """What `make ui RECIPE=recipes/tweet_sentiment_experiment.yaml` loads: the variant
    partitions on the two model assets, the comparison, and a valid repository."""
    import os
    import subprocess
    import sys

    probe = (
        "import dagster as dg\n"
        "from ft_pipeline.definitions import defs\n"
        "dg.Definitions.validate_loadable(defs)\n"
        "graph = defs.resolve_asset_graph()\n"
        "for key in ('tokenized_dataset', 'fine_tuned_adapter', 'evaluation_report',"
        " 'experiment_comparison', 'deployed_model'):\n"
        "    p = graph.get(dg.AssetKey(key)).partitions_def\n"
        "    print(key, p.get_partition_keys() if p else None)\n"
    )
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "tweet_sentiment_experiment.yaml"
    env = {**os.environ, "FT_RECIPE": str(recipe), "FT_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    variants = "['minilm-6k', 'minilm-9k', 'minilm-6k-lr2e-3']"
    assert out.stdout.splitlines() == [
        "tokenized_dataset None",
        f"fine_tuned_adapter {variants}",
        f"evaluation_report {variants}",
        "experiment_comparison None",
        "deployed_model None",
    ]
