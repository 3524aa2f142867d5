"""Bad recipes fail at load with the file, the field, the value and what is allowed.

Each case is a YAML recipe file read with `load_recipe` (what the CLI, the code location and
every asset do); the last test shows a run and a sensor tick failing on the same message.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from ft_pipeline.recipe import RecipeError, load_recipe
from ft_pipeline_tests.reliability_input import GOOD, Site

BASE = "name: t\nlabels: [negative, neutral, positive]\n"


def _error(tmp_path: Path, snippet: str) -> str:
    path = tmp_path / "recipe.yaml"
    path.write_text(BASE + snippet)
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid recipe:\n  field '")
    return message


UNKNOWN = [
    pytest.param("epochs: 3\n", "'epochs'", "training", id="top-level"),
    pytest.param(
        "training:\n  learnig_rate: 0.001\n", "'training.learnig_rate'", "learning_rate", id="typo"
    ),
    pytest.param("lora:\n  rank: 8\n", "'lora.rank'", "r, target_modules", id="lora.rank"),
    pytest.param("data:\n  max_file_size: 5\n", "'data.max_file_size'", "max_file_mb", id="data"),
]


@pytest.mark.parametrize(("snippet", "field", "allowed"), UNKNOWN)
def test_unknown_key_names_the_field_and_lists_the_allowed_ones(tmp_path, snippet, field, allowed):
    message = _error(tmp_path, snippet)
    assert f"field {field}: unknown field; allowed fields here: " in message
    assert allowed in message.split("allowed fields here: ", 1)[1]


WRONG_TYPES = [
    pytest.param(
        "training:\n  learning_rate: fast\n",
        "field 'training.learning_rate': Input should be a valid number, "
        "unable to parse string as a number (got 'fast')",
        id="lr-string",
    ),
    pytest.param(
        "lora:\n  r: 8.5\n",
        "field 'lora.r': Input should be a valid integer, "
        "got a number with a fractional part (got 8.5)",
        id="r-float",
    ),
    pytest.param(
        "lora:\n  r: true\n",
        "field 'lora.r': expected a number, got a boolean (got True)",
        id="r-bool",
    ),
    pytest.param(
        "lora:\n  dropout: no\n",
        "field 'lora.dropout': expected a number, got a boolean (got False)",
        id="dropout-bool",
    ),
    pytest.param(
        "labels: positive\n",
        "field 'labels': Input should be a valid list (got 'positive')",
        id="labels-string",
    ),
    pytest.param(
        "data:\n  sources: data.csv\n",
        "field 'data.sources': Input should be a valid list (got 'data.csv')",
        id="sources-string",
    ),
    pytest.param(
        "cleaning: yes\n",
        "field 'cleaning': Input should be a valid dictionary or instance of CleaningConfig "
        "(got True)",
        id="section-bool",
    ),
    pytest.param(
        "cleaning:\n  fix_unicode: perhaps\n",
        "field 'cleaning.fix_unicode': Input should be a valid boolean, "
        "unable to interpret input (got 'perhaps')",
        id="bool-string",
    ),
    pytest.param(
        "data:\n  source_root: 5\n",
        "field 'data.source_root': Input should be a valid string (got 5)",
        id="source_root-int",
    ),
]


@pytest.mark.parametrize(("snippet", "line"), WRONG_TYPES)
def test_wrong_type_names_the_field_and_the_value(tmp_path, snippet, line):
    assert line in _error(tmp_path, snippet)


BAD_VALUES = {
    "lr-0": (
        "training: {learning_rate: 0}",
        "'training.learning_rate': Input should be greater than 0 (got 0)",
    ),
    "lr-negative": (
        "training: {learning_rate: -1e-4}",
        "'training.learning_rate': Input should be greater than 0 (got '-1e-4')",
    ),
    "head-lr-0": (
        "training: {head_learning_rate: 0.0}",
        "'training.head_learning_rate': Input should be greater than 0 (got 0.0)",
    ),
    "r-negative": (
        "lora: {r: -8}",
        "'lora.r': Input should be greater than or equal to 1 (got -8)",
    ),
    "alpha-0": (
        "lora: {alpha: 0}",
        "'lora.alpha': Input should be greater than or equal to 1 (got 0)",
    ),
    "max_file_mb-0": (
        "data: {max_file_mb: 0}",
        "'data.max_file_mb': Input should be greater than 0 (got 0)",
    ),
    "labels-by-case": (
        "labels: [positive, Positive, negative]",
        "'labels': labels 'positive' and 'Positive' differ only by case or spacing",
    ),
    "label-with-spaces": (
        "labels: [' positive', negative]",
        "'labels': label ' positive' is empty or has leading/trailing spaces",
    ),
    "aliases-by-case": (
        "label_aliases: {pos: positive, ' POS': negative}",
        "'label_aliases': label_aliases 'pos' and ' POS' differ only by case or spacing",
    ),
}


@pytest.mark.parametrize(("snippet", "line"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_out_of_range_value_names_the_field_and_the_bound(tmp_path, snippet, line):
    assert f"\n  field {line}" in _error(tmp_path, snippet + "\n")


def test_every_bad_field_is_reported_at_once(tmp_path: Path):
    message = _error(tmp_path, "lora:\n  r: -1\ntraining:\n  learning_rate: 0\n  epoch: 2\n")
    assert message.count("\n  field ") == 3
    for field in ("'lora.r'", "'training.learning_rate'", "'training.epoch'"):
        assert field in message


def test_numbers_as_yaml_writes_them_are_accepted(tmp_path: Path):
    path = tmp_path / "recipe.yaml"
    path.write_text(BASE + "training:\n  learning_rate: 1e-3\nlora:\n  r: 8\n")
    assert yaml.safe_load(path.read_text())["training"]["learning_rate"] == "1e-3"  # YAML 1.1
    recipe = load_recipe(path)
    assert (recipe.training.learning_rate, recipe.lora.r) == (0.001, 8)


def test_bad_recipe_fails_runs_and_sensor_ticks_naming_the_field(tmp_path: Path):
    with dg.DagsterInstance.ephemeral() as instance:
        site = Site(tmp_path, instance)
        site.good()
        good = site.recipe_file.read_text()
        site.recipe_file.write_text(good + "lora:\n  r: -4\n")  # edited while the UI runs
        message = site.materialize(GOOD).error()
        assert f"{site.recipe_file}: invalid recipe:" in message
        assert "field 'lora.r': Input should be greater than or equal to 1 (got -4)" in message
        with pytest.raises(RecipeError, match=r"field 'lora\.r'"):
            site.tick()
        site.recipe_file.write_text(good)
        site.good()
