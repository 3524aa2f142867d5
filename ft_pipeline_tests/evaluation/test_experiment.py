"""An experiment's comparison: the winner rule, the same-rows guard, the table and the plot."""

from __future__ import annotations

import random

import pytest

from ft_pipeline.lib.evaluation.experiment import (
    TIE,
    VariantScore,
    check_same_rows,
    compare,
    pick_winner,
    render_table,
    variant_score,
    write_comparison,
)
from ft_pipeline.recipe import parse_recipe
from ft_pipeline.recipe_experiment import Variant

LABELS = ["negative", "neutral", "positive"]


def _score(name, low, cpu, score=None):
    return VariantScore(
        name,
        {},
        f"key-{name}",
        score or low + 0.02,
        low,
        low + 0.04,
        cpu,
        100,
        True,
        [],
        {"train": ""},
    )


def test_the_winner_has_the_highest_lower_bound_and_near_ties_go_to_the_cheaper():
    assert pick_winner([_score("a", 0.60, 1.0), _score("b", 0.70, 9.0)]).name == "b"
    # Within TIE of the best lower bound, the cheaper variant wins even with a lower bound
    # a hair below, and even with a higher point score on the other side.
    tied = [_score("big", 0.700, 9.0, score=0.80), _score("small", 0.700 - TIE / 2, 2.0)]
    assert pick_winner(tied).name == "small"
    apart = [_score("big", 0.700, 9.0), _score("small", 0.700 - 3 * TIE, 2.0)]
    assert pick_winner(apart).name == "big"


def test_variants_scored_on_different_rows_are_refused():
    check_same_rows({"a": "d1", "b": "d1"})
    with pytest.raises(ValueError, match="scored on different test rows"):
        check_same_rows({"a": "d1", "b": "d2"})


def _recipe():
    return parse_recipe(
        {
            "name": "exp",
            "labels": LABELS,
            "prompt": {"template": "{text}"},
            "evaluation": {"bootstrap_samples": 200},
            "experiment": {"grid": {"training.learning_rate": [1e-3, 2e-3]}},
        }
    )


def _result(refs, accuracy, seed):
    rng = random.Random(seed)
    preds = [r if rng.random() < accuracy else rng.choice(LABELS) for r in refs]
    return {
        "references": refs,
        "predictions": {"base": [LABELS[0]] * len(refs), "fine-tuned": preds},
        "models": {"base": {"macro_f1": 0.2}},
        "gate": {"passed": accuracy > 0.5, "reasons": [] if accuracy > 0.5 else ["too weak"]},
    }


def test_the_comparison_pairs_every_variant_with_the_winner_and_tfidf_on_the_same_rows(tmp_path):
    recipe = _recipe()
    rng = random.Random(0)
    refs = [rng.choice(LABELS) for _ in range(300)]
    variants = recipe.variants()
    results = {variants[0].name: _result(refs, 0.9, 1), variants[1].name: _result(refs, 0.4, 2)}
    scores = [
        variant_score(
            v,
            f"k{i}",
            results[v.name],
            {"cpu_seconds": 60.0 * (i + 1), "train_rows": 100},
            v.recipe,
        )
        for i, v in enumerate(variants)
    ]
    tfidf = {
        "predictions": _result(refs, 0.7, 3)["predictions"]["fine-tuned"],
        "macro_f1": 0.7,
        "train_rows": 1000,
    }
    comparison = compare(recipe, scores, results, tfidf)
    strong, weak = variants[0].name, variants[1].name
    assert comparison["winner"] == strong and comparison["winner_adapter_key"] == "k0"
    lines = {v["name"]: v for v in comparison["variants"]}
    assert lines[strong]["low"] < lines[strong]["score"] < lines[strong]["high"]
    assert lines[strong]["cpu_minutes"] == pytest.approx(1.0)
    assert lines[strong]["extra"]["gain_vs_tfidf_all"]["low"] > 0  # 0.9 vs 0.7 accuracy
    assert lines[weak]["extra"]["gain_vs_winner"]["high"] < 0
    assert "gain_vs_winner" not in lines[strong]["extra"]
    table = write_comparison(comparison, tmp_path)
    text = table.read_text()
    assert f"**{strong}** (winner)" in text and weak in text
    assert "TF-IDF (all training rows) 0.7000" in text and "passed its promotion gate" in text
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    assert (
        render_table(
            {
                **comparison,
                "winner_gate_passed": False,
                "winner_gate_reasons": ["worse than the champion"],
            }
        ).count("nothing is deployed: worse than the champion")
        == 1
    )


def test_a_generation_variant_is_ranked_by_token_f1_with_its_interval():
    recipe = parse_recipe(
        {
            "name": "gen",
            "task": "instruction",
            "prompt": {"template": "{prompt}"},
            "evaluation": {"bootstrap_samples": 200},
        }
    )
    refs = ["the cat sat", "a dog ran", "blue sky"] * 20
    result = {
        "references": refs,
        "predictions": {"fine-tuned": ["the cat", "dog ran", "red"] * 20},
        "models": {"base": {"token_f1": 0.1}},
        "gate": {"passed": False, "reasons": []},
    }
    line = variant_score(Variant("v", {}, recipe), "k", result, {"train_seconds": 30}, recipe)
    assert line.low <= line.score <= line.high and 0.3 < line.score < 0.9
    assert line.cpu_minutes == pytest.approx(0.5)  # no CPU time recorded: the wall time
