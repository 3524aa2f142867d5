"""The recipe's `experiment:` section: variants expanded, named, validated, datasets shared."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ft_pipeline.recipe import RecipeError, load_recipe, parse_recipe

DEFAULT = Path(__file__).resolve().parents[1] / "recipes" / "tweet_sentiment.yaml"


def _recipe(experiment):
    data = yaml.safe_load(DEFAULT.read_text())
    return parse_recipe({**data, "experiment": experiment})


def test_a_grid_expands_to_every_combination_with_readable_partition_keys():
    r = _recipe({"grid": {"training.learning_rate": [5.0e-4, 1.0e-3], "lora.r": [8, 16]}})
    variants = r.variants()
    assert [v.name for v in variants] == [
        "learning_rate-0.0005_r-8",
        "learning_rate-0.0005_r-16",
        "learning_rate-0.001_r-8",
        "learning_rate-0.001_r-16",
    ]
    assert {(v.recipe.training.learning_rate, v.recipe.lora.r) for v in variants} == {
        (5e-4, 8),
        (5e-4, 16),
        (1e-3, 8),
        (1e-3, 16),
    }
    for v in variants:  # a variant is a whole recipe: no experiment of its own, same gates
        assert v.recipe.experiment is None
        assert v.recipe.evaluation == r.evaluation and v.recipe.split == r.split
        assert v.recipe.dataset_name == r.name  # same tokenization: the shared dataset


def test_a_listed_variant_that_tokenizes_differently_gets_its_own_dataset():
    r = _recipe(
        {
            "variants": [
                {},
                {
                    "name": "minilm",
                    "model.base": "bundled:all-minilm-l6-v2",
                    "lora.target_modules": "all-linear",
                },
                {"name": "deeper", "training.distributed.strategy": "single", "lora.r": 4},
            ]
        }
    )
    by_name = {v.name: v for v in r.variants()}
    assert list(by_name) == ["as-written", "minilm", "deeper"]
    assert (
        by_name["as-written"].recipe.model_dump()
        == r.model_copy(update={"experiment": None}).model_dump()
    )
    minilm = by_name["minilm"].recipe
    assert minilm.model.base == "bundled:all-minilm-l6-v2"
    assert minilm.dataset_name.startswith(f"{r.name}@") and minilm.dataset_name != r.name
    assert by_name["deeper"].recipe.dataset_name == r.name
    # Overriding a nested knob did not leak into the other variants.
    assert by_name["as-written"].recipe.lora.r == r.lora.r


@pytest.mark.parametrize(
    ("experiment", "message"),
    [
        ({"grid": {"cleaning.min_chars": [1, 2]}}, "'cleaning.min_chars' is not a knob"),
        ({"grid": {"lora.r": []}}, "experiment.grid.lora.r lists no values"),
        ({}, "experiment needs a grid or a list of variants"),
        ({"grid": {"training.learning_rate": ["fast"]}}, "experiment variant 'learning_rate-fast'"),
        ({"variants": [{"lora.r": 8}, {"lora.r": 8}]}, "are both named 'r-8'"),
        ({"variants": [{"name": "a b", "lora.r": 8}]}, "experiment.variants[0].name 'a b'"),
        ({"grid": {"lora.r": [1, 2, 3]}, "max_variants": 2}, "more than experiment.max_variants"),
    ],
)
def test_a_bad_experiment_fails_at_load_naming_what_to_change(experiment, message):
    with pytest.raises(RecipeError) as info:
        _recipe(experiment)
    assert message in str(info.value)


def test_a_recipe_without_an_experiment_is_one_run_and_the_shipped_experiment_loads():
    plain = load_recipe(DEFAULT)
    assert plain.experiment is None and plain.variants() == []
    assert plain.dataset_name == plain.name
    shipped = load_recipe(DEFAULT.parent / "tweet_sentiment_experiment.yaml")
    variants = shipped.variants()
    assert 3 <= len(variants) <= 4
    assert len({v.name for v in variants}) == len(variants)
