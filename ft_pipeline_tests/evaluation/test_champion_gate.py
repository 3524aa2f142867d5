"""The promotion gate re-scores the champion on today's test rows and decides on paired
evidence, through Dagster on a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ft_pipeline.lib.deployment import registry
from ft_pipeline.lib.evaluation.promotion import gate
from ft_pipeline.recipe import load_recipe
from ft_pipeline_tests.training.test_assets import MODEL, _checks, _meta, _project, model_project

NAME = "ft-fixture"


def test_a_challenger_worse_on_the_same_rows_is_refused_though_the_champion_looks_worse(
    tmp_path, tiny_model_dir
):
    _, recipe_path = _project(tmp_path, tiny_model_dir)
    with model_project(tmp_path, recipe_path) as project:
        first = project.materialize(MODEL)
        assert first.success, _checks(first)
        # The champion was registered with a score measured on other, harder rows: by that
        # number alone, any challenger looks better.
        project.client.set_model_version_tag(NAME, "1", "ft_pipeline.metric.macro_f1", "0.0")

        data = yaml.safe_load(recipe_path.read_text())
        data["training"]["max_steps"] = 1  # a new adapter, barely trained
        data["evaluation"] = {"min_f1_gain": -1.0}  # the rule against base is not under test
        recipe_path.write_text(yaml.safe_dump(data))
        second = project.materialize(MODEL)

    assert not second.success
    assert _checks(second)["evaluation_report_promotion_gate"] is False
    assert not second.asset_materializations_for_node("deployed_model")
    assert str(registry.champion(project.client, NAME).version) == "1"

    report = _meta(second, "evaluation_report")
    result = json.loads(Path(report["report_path"]).with_name("result.json").read_text())
    champion, challenger = result["models"]["champion"], result["models"]["fine-tuned"]
    assert result["champion_version"] == "1"
    assert champion["macro_f1"] > challenger["macro_f1"]  # scored on the same rows
    against = result["champion_gain"]
    assert against["high"] < 0 and against["low"] <= -0.02
    assert any(
        "against champion version 1 on the same rows" in r for r in result["gate"]["reasons"]
    )
    text = Path(report["report_path"]).read_text()
    assert "Against champion version 1, re-scored on the same rows" in text
    cached = list((tmp_path / "home" / "reports" / "fixture" / "champions").glob("v1-*.json"))
    assert len(cached) == 1 and len(json.loads(cached[0].read_text())) == result["test_rows"]

    # By its registered score alone (the old rule), this challenger would have been promoted.
    alone = {k: v for k, v in result.items() if k != "champion_gain"}
    assert gate(alone, load_recipe(recipe_path), {"macro_f1": 0.0})["passed"]


@pytest.mark.parametrize("task", ["classification", "instruction", "chat"])
def test_the_champion_is_asked_the_very_prompts_evaluation_scored(task, tiny_model_dir):
    """What re-scoring sends the served champion renders, through the server's own path
    (`encode_prompts`), to the prompt tokens evaluation scored for the same test rows:
    for chat, the whole conversation before the answer, system turn included."""
    from datasets import Dataset, DatasetDict
    from transformers import AutoTokenizer

    from ft_pipeline.lib.data.rendering import encode_prompts, encode_rows
    from ft_pipeline.lib.evaluation.promotion import champion_inputs
    from ft_pipeline.lib.model.scoring import prompt_ids
    from ft_pipeline_tests.conftest import LABELS
    from ft_pipeline_tests.data.test_rendering import _frame, _recipe

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    recipe = _recipe(task, 256)
    if task == "classification":
        frame = _frame(text=["the flight was great", "the gate was rude"], label=LABELS[:2])
    elif task == "instruction":
        frame = _frame(text=["say hi", "say bye"], response=["hi there", "bye now"])
    else:
        talks = [
            [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "any seats"},
                {"role": "assistant", "content": "one left"},
                {"role": "user", "content": "book it"},
                {"role": "assistant", "content": "booked"},
            ],
            [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}],
        ]
        frame = _frame(
            text=["book it", "hello"],
            messages=[json.dumps(t) for t in talks],
            response=["booked", "hi"],
        )
    rows = encode_rows(frame, recipe, tokenizer).rows
    test = Dataset.from_pandas(rows.reset_index(drop=True))
    asked = champion_inputs(DatasetDict(test=test), recipe, [1, 0])
    scored = [prompt_ids(rows.iloc[i]["input_ids"], rows.iloc[i]["labels"]) for i in (1, 0)]
    assert encode_prompts(asked, recipe, tokenizer) == scored
    if task == "chat":
        assert "one left" in asked[1] and "booked" not in asked[1]


def test_a_champion_that_no_longer_loads_is_compared_by_its_registered_metric(tmp_path, tracking):
    """Its artifacts gone, the champion cannot answer: the evaluation goes on, the gate
    falls back to the registered score, and the report says why."""
    from datasets import Dataset, DatasetDict
    from mlflow.tracking import MlflowClient

    from ft_pipeline.lib.evaluation.promotion import compare_with_champion
    from ft_pipeline.lib.evaluation.report import _champion_line
    from ft_pipeline.recipe import parse_recipe

    recipe = parse_recipe({"name": "gone", "labels": ["a", "b"]})
    client = MlflowClient(tracking)
    client.create_registered_model(recipe.model_name)
    version = client.create_model_version(recipe.model_name, (tmp_path / "deleted").as_uri())
    client.set_registered_model_alias(recipe.model_name, "champion", version.version)
    client.set_model_version_tag(
        recipe.model_name, version.version, "ft_pipeline.metric.macro_f1", "0.9"
    )
    result = {"models": {}, "references": ["a", "b"], "test_digest": "d", "adapter_key": "k"}
    test = Dataset.from_dict({"text": ["x", "y"]})
    said: list[str] = []
    registered = compare_with_champion(
        result, recipe, DatasetDict(test=test), [0, 1], client, tracking, tmp_path, said.append
    )
    assert registered == {"macro_f1": 0.9}
    assert "champion_gain" not in result and result["champion_version"] == str(version.version)
    assert "could not be re-scored" in said[-1]
    line = _champion_line(result, classification=True)
    assert result["champion_rescore_error"] in line and "registered metric" in line
