"""The promotion gate re-scores the champion on today's test rows and decides on paired
evidence, through Dagster on a tiny random Llama."""

from __future__ import annotations

import json
from pathlib import Path

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
