"""tokenized_dataset_truncation_rate names the input lengths and every knob that fixes it."""

from __future__ import annotations

import pytest

from ft_pipeline.defs.training.checks import _truncation
from ft_pipeline.recipe import parse_recipe
from ft_pipeline_tests.conftest import LABELS

MINILM = "bundled:all-minilm-l6-v2"  # max_position_embeddings 512
PCT = {"p50": 30, "p90": 70, "p95": 95, "p99": 120, "max": 400, "max_length": 64}


def _manifest(**extra) -> dict:
    return {"truncation_rate": 0.2, "truncated_rows": 18, "too_long_rows": 2, **extra}


def _check(how: str, manifest: dict, max_length: int = 64, base: str = "unused"):
    recipe = parse_recipe(
        {
            "name": "r",
            "task": "classification",
            "labels": LABELS,
            "model": {"base": base, "max_length": max_length, "truncation": how},
            "quality": {"max_truncation_rate": 0.05},
        }
    )
    return _truncation(recipe, manifest, "the metadata")


def test_the_message_names_the_percentiles_and_both_knobs():
    result = _check("head", _manifest(token_length_percentiles=PCT))
    assert not result.passed
    text = result.description
    assert "20.0% of rows shortened (18) or dropped as too long (2)" in text
    assert "p50 30, p90 70, p99 120, max 400 vs max_length 64" in text
    assert "raise model.max_length to about 95 (the rows' p95" in text
    assert "set model.truncation: head_tail" in text
    assert "quality.max_truncation_rate 0.05" in text and "cleaning.max_chars" in text
    assert result.metadata["token_length_percentiles"].value == PCT


def test_a_head_tail_recipe_is_told_it_already_keeps_both_ends():
    result = _check("head_tail", _manifest(token_length_percentiles=PCT), max_length=100)
    text = result.description
    assert "model.truncation head_tail" in text and "is head_tail already" in text
    assert "model.truncation: head_tail" not in text
    assert "about 120 (the rows' p99" in text  # p95 fits max_length 100 already


@pytest.mark.parametrize("rate, passed", [(0.05, True), (0.06, False)])
def test_the_limit_is_the_recipes_and_an_older_manifest_still_reads(rate, passed):
    result = _check("head", _manifest(truncation_rate=rate))  # no percentiles recorded
    assert result.passed is passed
    meta = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
    assert "raise model.max_length (longer inputs" in meta["fix"]
    assert "vs max_length" not in meta["measured"]


def test_the_suggested_max_length_never_exceeds_what_the_base_model_takes():
    long_docs = {"p50": 800, "p90": 2500, "p95": 3400, "p99": 5000, "max": 5200}
    result = _check("head", _manifest(token_length_percentiles=long_docs), 256, MINILM)
    assert "about 512 (the rows' p95, capped at the base model's 512 positions" in (
        result.description
    )
