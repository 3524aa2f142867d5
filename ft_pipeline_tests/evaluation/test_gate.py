"""The promotion gate's rule, on hand-made evaluation results."""

from __future__ import annotations

import pytest

from ft_pipeline.lib.evaluation.promotion import gate
from ft_pipeline.recipe import parse_recipe


def _recipe(margin: float):
    return parse_recipe({"name": "g", "labels": ["a", "b"], "evaluation": {"min_f1_gain": margin}})


def _result(base: float, tuned: float, high: float) -> dict:
    return {
        "models": {"base": {"macro_f1": base}, "fine-tuned": {"macro_f1": tuned}},
        "interval": {"f1": tuned, "low": tuned - 0.05, "high": high},
    }


@pytest.mark.parametrize(
    ("base", "tuned", "margin", "passed"),
    [
        (0.2, 0.6, 0.05, True),
        (0.2, 0.24, 0.05, False),
        (0.5, 0.5, 0.0, True),
        (0.5, 0.4, 0.0, False),
        (0.5, 0.4, -0.2, True),
    ],
)
def test_gate_needs_the_margin_over_base(base, tuned, margin, passed):
    outcome = gate(_result(base, tuned, tuned + 0.05), _recipe(margin), None)
    assert outcome["passed"] is passed
    assert bool(outcome["reasons"]) is not passed


def test_gate_refuses_a_model_clearly_worse_than_the_champion():
    result = _result(0.2, 0.6, high=0.64)
    assert gate(result, _recipe(0.05), {"macro_f1": 0.63})["passed"]  # within the interval
    refused = gate(result, _recipe(0.05), {"macro_f1": 0.70})
    assert not refused["passed"]
    assert "champion macro_f1 0.7000 (as registered" in refused["reasons"][0]
    assert refused["champion_rescored"] is False


def test_must_beat_baseline_blocks_a_model_within_noise_of_tfidf():
    result = _result(0.2, 0.6, high=0.64)
    result["baseline_gain"] = {"gain": 0.01, "low": -0.03, "high": 0.05}
    assert gate(result, _recipe(0.05), None)["passed"]  # off by default: reported only
    strict = parse_recipe(
        {"name": "g", "labels": ["a", "b"], "evaluation": {"must_beat_baseline": True}}
    )
    refused = gate(result, strict, None)
    assert not refused["passed"]
    assert "does not beat TF-IDF on the same rows" in refused["reasons"][0]
    result["baseline_gain"] = {"gain": 0.08, "low": 0.02, "high": 0.14}
    assert gate(result, strict, None)["passed"]


def test_gate_decides_on_the_lower_bounds_of_the_paired_gains():
    result = _result(0.2, 0.6, high=0.64)
    result["gain"] = {"gain": 0.4, "low": 0.03, "high": 0.7}
    refused = gate(result, _recipe(0.05), None)  # a point gain of 0.4, but its bound is 0.03
    assert not refused["passed"] and "lower bound is below the margin 0.05" in refused["reasons"][0]
    result["gain"]["low"] = 0.06
    assert gate(result, _recipe(0.05), None)["passed"]

    result["champion_version"] = "3"
    result["champion_gain"] = {"gain": -0.01, "low": -0.019, "high": 0.02}
    assert gate(result, _recipe(0.05), None)["passed"]  # within max_regression (0.02)
    result["champion_gain"]["low"] = -0.05
    # Worse than the champion on the same rows: refused, however low its registered score.
    refused = gate(result, _recipe(0.05), {"macro_f1": 0.1})
    assert not refused["passed"] and refused["champion_rescored"] is True
    assert "against champion version 3 on the same rows" in refused["reasons"][0]


def test_generation_gate_fails_a_gain_of_a_few_thousandths_by_default():
    recipe = parse_recipe({"name": "g", "task": "instruction", "prompt": {"template": "{prompt}"}})
    result = {
        "models": {"base": {"token_f1": 0.091}, "fine-tuned": {"token_f1": 0.095}},
        "gain": {"gain": 0.004, "low": 0.001, "high": 0.008},  # even a CI above zero
    }
    refused = gate(result, recipe, None)
    assert refused["margin"] == 0.02 and refused["metric"] == "token_f1"
    assert not refused["passed"] and "token_f1 gain over base" in refused["reasons"][0]
    result["gain"] = {"gain": 0.08, "low": 0.04, "high": 0.12}
    assert gate(result, recipe, None)["passed"]
