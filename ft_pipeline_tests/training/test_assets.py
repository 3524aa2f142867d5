"""The model half through Dagster on a tiny random Llama: train, reuse, resume, gate, deploy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import mlflow
import pytest
import yaml
from mlflow.tracking import MlflowClient

from ft_pipeline.definitions import defs
from ft_pipeline.defs.partitions import source_partitions
from ft_pipeline.defs.resources import (
    MlflowResource,
    RecipeResource,
    StateResource,
    TrainerResource,
)
from ft_pipeline.lib.deployment import registry
from ft_pipeline_tests.conftest import fixture_rows, write_csv, write_recipe

KEY = "file:data/corpus.csv"
DATA = dg.AssetSelection.assets("raw_data", "cleaned_data")
TOKENIZED = dg.AssetSelection.assets("tokenized_dataset")
MODEL = dg.AssetSelection.assets("fine_tuned_adapter", "evaluation_report", "deployed_model")
TRAIN_AND_EVALUATE = dg.AssetSelection.assets("fine_tuned_adapter", "evaluation_report")
TRAINING = {
    "learning_rate": 0.01,
    "batch_size": 8,
    "max_steps": 24,
    "eval_every": 6,
    "checkpoint_every": 2,
    "early_stopping_patience": None,
    "warmup_ratio": 0.0,
    "lr_scheduler": "constant",
}
LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}


class ModelProject:
    def __init__(self, root: Path, instance: dg.DagsterInstance, recipe: Path) -> None:
        self.root, self.instance = root, instance
        self.state = StateResource(root=str(root / "home"))
        self.recipe = RecipeResource(path=str(recipe))
        self.mlflow = MlflowResource()
        self.client = MlflowClient(self.mlflow.uri(self.state))

    def materialize(self, selection, partition_key=None, **trainer):
        return dg.materialize(
            [*defs.assets, *defs.asset_checks],
            selection=selection,
            partition_key=partition_key,
            instance=self.instance,
            resources={
                "state": self.state,
                "recipe": self.recipe,
                "mlflow": self.mlflow,
                "trainer": TrainerResource(**trainer),
            },
            raise_on_error=False,
        )

    def prepare_data(self) -> None:
        self.instance.add_dynamic_partitions(source_partitions.name, [KEY])
        assert self.materialize(DATA, KEY).success
        assert self.materialize(TOKENIZED).success


@contextmanager
def model_project(root: Path, recipe: Path, prepare: bool = True) -> Iterator[ModelProject]:
    """A ModelProject on a fresh Dagster instance under `root/dagster`; with `prepare`, its
    corpus partition and tokenized dataset are materialized first."""
    (root / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
        project = ModelProject(root, instance, recipe)
        if prepare:
            project.prepare_data()
        yield project


def _project(tmp_path, model_dir, **overrides) -> ModelProject:
    write_csv(tmp_path / "data" / "corpus.csv", fixture_rows(40))
    sections = {"training": TRAINING, "lora": LORA, **overrides}
    return sections, write_recipe(tmp_path, model_dir, ["data/corpus.csv"], **sections)


@pytest.fixture
def project(tmp_path: Path, tiny_model_dir: Path, request):
    overrides = getattr(request, "param", {})
    _, recipe = _project(tmp_path, tiny_model_dir, **overrides)
    with model_project(tmp_path, recipe) as p:
        yield p


def _meta(result, asset: str) -> dict:
    [event] = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in event.metadata.items()}


def _input_example(project: ModelProject, name: str, version: str) -> list[str]:
    """The texts of a registered version's input example."""
    from ft_pipeline.lib.deployment.job import fluent_tracking_uri

    with fluent_tracking_uri(project.mlflow.uri(project.state)):
        model = mlflow.models.Model.load(f"models:/{name}/{version}")
        return list(model.load_input_example()["text"])


def _test_texts(project: ModelProject, n: int = 3) -> list[str]:
    """The recipe's own first test rows, as the served model takes them."""
    from ft_pipeline.lib.data.tokenized import load_tokenized

    dataset, _ = load_tokenized(project.state.paths().tokenized(project.recipe.load().dataset_name))
    return [str(t) for t in dataset["test"]["text"][:n]]


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_train_evaluate_deploy_then_reuse_until_an_evaluation_setting_changes(
    project: ModelProject,
):
    result = project.materialize(MODEL)
    assert result.success, _checks(result)
    adapter = _meta(result, "fine_tuned_adapter")
    assert adapter["reused"] is False and adapter["steps"] == 24
    assert adapter["best_val_loss"] < adapter["initial_val_loss"]
    assert _checks(result)["fine_tuned_adapter_converged"]
    assert _checks(result)["evaluation_report_promotion_gate"]

    run = project.client.get_run(adapter["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["dagster.run_id"] == result.run_id
    assert run.data.params["recipe.lora.r"] == "8"
    assert run.data.params["recipe.lora.use_dora"] == "False"
    assert run.data.params["recipe.training.weight_decay"] == "0.0"
    history = project.client.get_metric_history(run.info.run_id, "train_loss")
    assert len(history) == 24
    contexts = {i.tags[0].value for i in run.inputs.dataset_inputs}
    assert contexts == {"train", "validation"}
    artifacts = {a.path for a in project.client.list_artifacts(run.info.run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in artifacts

    report = _meta(result, "evaluation_report")
    assert {"macro_f1_base", "macro_f1_fine_tuned", "macro_f1_tfidf"} <= set(report)
    assert report["macro_f1_fine_tuned"] > report["macro_f1_base"]
    text = Path(report["report_path"]).read_text()
    assert "TF-IDF baseline" in text and "confusion_matrices.png" in text

    deployed = _meta(result, "deployed_model")
    assert deployed["version"] == "1" and deployed["previous_champion"] == "none"
    champion = registry.champion(project.client, "ft-fixture")
    assert champion is not None and str(champion.version) == "1"
    assert _input_example(project, "ft-fixture", "1") == _test_texts(project)

    again = project.materialize(TRAIN_AND_EVALUATE)
    assert again.success and _meta(again, "fine_tuned_adapter")["reused"] is True
    assert _meta(again, "fine_tuned_adapter")["adapter_key"] == adapter["adapter_key"]
    assert "base model" in _meta(again, "fine_tuned_adapter")["key_covers"]
    evaluated = _meta(again, "evaluation_report")
    assert evaluated["reused"] is True and evaluated["evaluation_key"] == report["evaluation_key"]

    # An evaluation setting changes: the adapter is reused, its evaluation is made again.
    settings = yaml.safe_load(Path(project.recipe.path).read_text())
    settings.setdefault("evaluation", {})["max_test_rows"] = 5
    Path(project.recipe.path).write_text(yaml.safe_dump(settings))
    changed = project.materialize(TRAIN_AND_EVALUATE)
    assert _meta(changed, "fine_tuned_adapter")["reused"] is True
    evaluated = _meta(changed, "evaluation_report")
    assert evaluated["reused"] is False and evaluated["evaluation_key"] != report["evaluation_key"]
    result = json.loads(Path(evaluated["report_path"]).with_name("result.json").read_text())
    assert result["test_rows"] == 5 and result["evaluation_key"] == evaluated["evaluation_key"]


def test_crash_then_rematerialize_resumes_from_last_checkpoint(project: ModelProject):
    crashed = project.materialize(
        dg.AssetSelection.assets("fine_tuned_adapter"), fail_after_steps=5
    )
    assert not crashed.success
    runs = project.client.search_runs(
        [project.mlflow.tracker(project.state, project.recipe.load()).experiment_id]
    )
    assert runs and all(r.info.status == "FAILED" for r in runs)
    home = project.state.paths().adapters("fixture")
    [folder] = list(home.iterdir())
    (folder / "checkpoints" / "step-000099").mkdir()  # an incomplete checkpoint: skipped

    resumed = project.materialize(dg.AssetSelection.assets("fine_tuned_adapter"))
    assert resumed.success
    meta = _meta(resumed, "fine_tuned_adapter")
    # Attempt 1 crashed after steps 1-5 (checkpoints 2, 4); the retry policy resumed it
    # from 4 and it crashed again after steps 5-9 (checkpoints 6, 8). So: resume from 8.
    assert len(runs) == 2
    assert meta["resumed_from_step"] == 8
    assert meta["steps"] == 24


@pytest.mark.parametrize("project", [{"evaluation": {"min_f1_gain": 0.99}}], indirect=True)
def test_gate_refuses_a_model_that_does_not_beat_base_enough(project: ModelProject):
    result = project.materialize(MODEL)
    assert not result.success
    assert _checks(result)["evaluation_report_promotion_gate"] is False
    assert not result.asset_materializations_for_node("deployed_model")
    assert registry.champion(project.client, "ft-fixture") is None


def test_new_champion_then_cli_predict_and_rollback(project: ModelProject, monkeypatch, capsys):
    from ft_pipeline import cli

    assert project.materialize(MODEL).success
    recipe_path = Path(project.recipe.path)
    data = yaml.safe_load(recipe_path.read_text())
    data["training"]["max_steps"] = 36  # a different adapter key: a new model version
    # Versions and rollback are under test here, not the gate against the champion
    # (evaluation/test_champion_gate.py): any difference on the same rows may pass.
    data.setdefault("evaluation", {})["max_regression"] = 1.0
    recipe_path.write_text(yaml.safe_dump(data))
    second = project.materialize(MODEL)
    assert second.success
    deployed = _meta(second, "deployed_model")
    assert (deployed["version"], deployed["previous_champion"]) == ("2", "1")

    for var in ("FT_HOME", "FT_RECIPE", "DAGSTER_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(var, "unused")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    base = ["--home", project.state.root, "--recipe", project.recipe.path]
    assert cli.main([*base, "predict", "the gate was awful and late", "love this smooth trip"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    assert all(line.split("\t")[0] in {"negative", "neutral", "positive"} for line in lines)

    assert cli.main([*base, "rollback"]) == 0
    assert "from version 2 back to version 1" in capsys.readouterr().out
    assert str(registry.champion(project.client, "ft-fixture").version) == "1"
    assert cli.main([*base, "rollback"]) == 1
    assert "no previous champion" in capsys.readouterr().err


def test_instruction_task_evaluates_with_generation_metrics(tmp_path, tiny_model_dir):
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    rows = [
        {"prompt": f"say {a} {b}", "response": f"{b} {a}"} for a in words for b in words if a != b
    ]
    write_csv(tmp_path / "data" / "corpus.csv", rows)
    recipe = write_recipe(
        tmp_path,
        tiny_model_dir,
        ["data/corpus.csv"],
        task="instruction",
        labels=[],
        label_aliases={},
        prompt={"system": None, "template": "{prompt}"},
        data={"columns": {"prompt": "prompt", "response": "response"}},
        training=TRAINING,
        lora=LORA,
        evaluation={"min_f1_gain": -1.0, "max_generation_rows": 8, "max_new_tokens": 8},
    )
    with model_project(tmp_path, recipe) as p:
        result = p.materialize(MODEL)
        assert result.success, _checks(result)
        # Merge check and input example: the recipe's own test prompts, not canned tweets.
        assert _input_example(p, p.recipe.load().model_name, "1") == _test_texts(p)
        assert _test_texts(p)[0].startswith("say ")
        # A second adapter is compared with the champion answering the same prompts.
        settings = yaml.safe_load(recipe.read_text())
        settings["training"]["max_steps"] = 12
        recipe.write_text(yaml.safe_dump(settings))
        second = _meta(p.materialize(TRAIN_AND_EVALUATE), "evaluation_report")
    challenger = json.loads(Path(second["report_path"]).with_name("result.json").read_text())
    assert challenger["champion_version"] == "1"
    assert set(challenger["models"]["champion"]) == {"exact_match", "token_f1"}
    assert {"gain", "low", "high"} <= set(challenger["champion_gain"])
    report = _meta(result, "evaluation_report")
    assert {"token_f1_base", "token_f1_fine_tuned"} <= set(report)
    saved = json.loads((Path(report["report_path"]).parent / "result.json").read_text())
    for name in ("base", "fine-tuned"):
        assert set(saved["models"][name]) >= {"exact_match", "token_f1", "val_loss", "perplexity"}
    assert saved["models"]["fine-tuned"]["val_loss"] < saved["models"]["base"]["val_loss"]
    # The first thing the report shows: test prompts with reference, base and tuned answers.
    samples = saved["samples"]
    assert len(samples) == 8  # sample_prompts (10) capped by the 8 answered rows
    assert all(s["prompt"].startswith("say ") and s["reference"] for s in samples)
    text = Path(report["report_path"]).read_text()
    assert text.index("## Sample answers") < text.index("## Verdict")
    assert samples[0]["prompt"] in text
    folder = _meta(result, "deployed_model")["model_folder"]
    from ft_pipeline.lib.deployment.serving import predict_folder

    out = predict_folder(folder, ["say golf hotel"])
    assert list(out.columns) == ["response"] and isinstance(out["response"][0], str)
