"""The promotion gate's rule, on hand-made evaluation results."""

from __future__ import annotations

import pytest

from ft_pipeline.lib.evaluation.job import gate
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
    assert "champion macro_f1 0.7000 is above" in refused["reasons"][0]


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
