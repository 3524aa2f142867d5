"""Unit tests for ft_pipeline.recipe: parse_recipe, load_recipe, error messages, content_hash."""

from pathlib import Path

import pydantic
import pytest

from ft_pipeline.recipe import Recipe, RecipeError, load_recipe, parse_recipe

SHIPPED = Path(__file__).resolve().parents[1] / "recipes" / "tweet_sentiment.yaml"


def base(**overrides):
    return {"name": "t", "labels": ["negative", "positive"], **overrides}


def error_of(data) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data)
    return str(info.value)


def test_shipped_recipe_loads():
    recipe = load_recipe(SHIPPED)
    assert isinstance(recipe, Recipe)
    assert recipe.name == "tweet_sentiment"
    assert recipe.task == "classification"
    assert recipe.labels == ["negative", "neutral", "positive"]
    assert recipe.label_aliases == {"neg": "negative", "pos": "positive", "neu": "neutral"}
    assert [s.uri for s in recipe.data.sources] == ["bundled:crowdflower-tweets"]
    assert recipe.data.columns.confidence == "confidence"
    assert recipe.cleaning.min_chars == 3
    assert recipe.cleaning.max_chars == 400
    assert recipe.model.max_length == 128
    assert "{text}" in recipe.prompt.template
    assert recipe.model_name == "tweet-sentiment"


def test_load_accepts_str_path():
    assert load_recipe(str(SHIPPED)) == load_recipe(SHIPPED)


def test_minimal_recipe_gets_defaults():
    recipe = parse_recipe(base())
    assert recipe.task == "classification"
    assert recipe.cleaning.urls == "replace"
    assert recipe.lora.r == 16
    assert recipe.split.seed == 42
    assert recipe.data.sources == []
    assert recipe.model_name == "ft-t"
    assert parse_recipe(base(registered_model_name="mine")).model_name == "mine"


def test_string_sources_are_coerced():
    recipe = parse_recipe(base(data={"sources": ["bundled:crowdflower-tweets", "data/a.csv"]}))
    uri, path = recipe.data.sources
    assert (uri.uri, uri.path) == ("bundled:crowdflower-tweets", None)
    assert (path.uri, path.path) == (None, "data/a.csv")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"name": "c", "task": "chat"}, "chat", id="chat"),
        pytest.param(
            {"name": "i", "task": "instruction", "prompt": {"template": "Q: {prompt}"}},
            "instruction",
            id="instruction",
        ),
    ],
)
def test_generative_tasks_need_no_labels(data, expected):
    assert parse_recipe(data).task == expected


def test_recipe_is_frozen():
    recipe = parse_recipe(base())
    with pytest.raises(pydantic.ValidationError):
        recipe.name = "other"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param(
            {"cleaning": {"urls": "strip"}},
            ["cleaning.urls", "'strip'", "keep", "replace", "remove"],
            id="cleaning.urls",
        ),
        pytest.param(
            {"task": "regression"},
            ["'task'", "'regression'", "classification", "instruction", "chat"],
            id="task",
        ),
        pytest.param(
            {"labels": ["only"]}, ["labels", "at least two", "classification"], id="one-label"
        ),
        pytest.param(
            {"labels": ["a", "a"]}, ["labels", "duplicates", "['a', 'a']"], id="dup-labels"
        ),
        pytest.param(
            {"label_aliases": {"neg": "negatory"}},
            ["label_aliases", "'negatory'", "allowed", "'negative'", "'positive'"],
            id="alias-unknown-label",
        ),
        pytest.param(
            {"prompt": {"template": "Classify this tweet"}},
            ["prompt.template", "{text}", "classification"],
            id="template-without-text",
        ),
        pytest.param(
            {"lora": {"r": 0}}, ["lora.r", "greater than or equal to 1", "(got 0)"], id="lora.r"
        ),
        pytest.param({"name": "Bad Name"}, ["'name'", "'Bad Name'", "pattern"], id="name-pattern"),
        pytest.param(
            {"cleaning": {"min_confidence": 1.5}},
            ["cleaning.min_confidence", "less than or equal to 1", "1.5"],
            id="min_confidence",
        ),
        pytest.param(
            {"cleaning": {"min_chars": 10, "max_chars": 5}},
            ["cleaning.min_chars", "cleaning.max_chars"],
            id="min>max chars",
        ),
        pytest.param(
            {"split": {"validation": 0.45, "test": 0.45}},
            ["split.validation", "split.test"],
            id="split-too-big",
        ),
        pytest.param(
            {"data": {"sources": ["bundled:nope"]}},
            ["data.sources.0", "'bundled:nope'", "bundled:crowdflower-tweets"],
            id="unknown-bundled",
        ),
        pytest.param(
            {"data": {"sources": [{"path": "a.csv", "uri": "bundled:crowdflower-tweets"}]}},
            ["data.sources.0", "exactly one", "'uri'", "'path'"],
            id="uri-and-path",
        ),
        pytest.param(
            {"data": {"sources": [{"path": "a.csv", "format": "xlsx"}]}},
            ["data.sources.0.format", "'xlsx'", "csv", "jsonl", "parquet"],
            id="source-format",
        ),
    ],
)
def test_bad_field_message_names_field_value_and_allowed(overrides, expected):
    message = error_of(base(**overrides))
    assert message.startswith("<recipe>: invalid recipe:")
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"


def test_instruction_template_needs_prompt_placeholder():
    message = error_of({"name": "i", "task": "instruction"})
    assert "prompt.template" in message
    assert "{prompt}" in message
    assert "'instruction'" in message


@pytest.mark.parametrize(
    ("overrides", "bad_value"),
    [
        pytest.param({"labels": ["only"]}, "['only']", id="one-label"),
        pytest.param(
            {"prompt": {"template": "Classify this tweet"}},
            "Classify this tweet",
            id="template",
        ),
    ],
)
def test_model_level_errors_show_the_bad_value(overrides, bad_value):
    assert bad_value in error_of(base(**overrides))


@pytest.mark.parametrize(
    ("overrides", "field", "allowed"),
    [
        pytest.param({"bogus": 1}, "'bogus'", ["cleaning", "labels", "training", "lora"], id="top"),
        pytest.param(
            {"cleaning": {"colour": "red"}},
            "'cleaning.colour'",
            ["urls", "mentions", "min_confidence", "near_duplicate_threshold"],
            id="cleaning",
        ),
        pytest.param(
            {"data": {"sources": [{"path": "a.csv", "columns": {"txt": "body"}}]}},
            "'data.sources.0.columns.txt'",
            ["text", "label", "confidence", "messages"],
            id="source-columns",
        ),
    ],
)
def test_unknown_field_names_field_and_lists_allowed(overrides, field, allowed):
    message = error_of(base(**overrides))
    assert f"field {field}: unknown field" in message
    listed = message.split("allowed fields here:", 1)[1]
    for name in allowed:
        assert name in listed


def test_every_bad_field_is_reported():
    message = error_of(base(cleaning={"urls": "strip"}, lora={"r": 0}, bogus=True))
    assert "cleaning.urls" in message
    assert "lora.r" in message
    assert "'bogus'" in message


@pytest.mark.parametrize("data", [["name", "t"], "just a string", None, 3])
def test_non_mapping_is_rejected(data):
    message = error_of(data)
    assert "must be a YAML mapping" in message
    assert type(data).__name__ in message


def test_load_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(RecipeError, match="recipe file not found") as info:
        load_recipe(path)
    assert str(path) in str(info.value)


def test_load_directory_is_not_a_recipe(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path)


def test_load_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: t\nlabels: [a, b\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="not valid YAML") as info:
        load_recipe(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("content", "kind"), [("- name: t\n- labels: [a, b]\n", "list"), ("", "NoneType")]
)
def test_load_non_mapping_yaml(tmp_path, content, kind):
    path = tmp_path / "r.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert "must be a YAML mapping" in message
    assert kind in message


def test_load_bad_field_names_file_and_field(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: t\nlabels: [a, b]\ncleaning:\n  urls: strip\n", encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid recipe")
    assert "cleaning.urls" in message
    assert "'strip'" in message


def test_content_hash_is_stable_for_equal_recipes():
    a = parse_recipe(base(cleaning={"urls": "keep", "min_chars": 2}, lora={"r": 8}))
    b = parse_recipe(base(lora={"r": 8}, cleaning={"min_chars": 2, "urls": "keep"}))
    assert a == b
    assert a.content_hash() == b.content_hash()
    assert len(a.content_hash()) == 16
    assert int(a.content_hash(), 16) >= 0


def test_content_hash_of_shipped_recipe_is_stable():
    assert load_recipe(SHIPPED).content_hash() == load_recipe(SHIPPED).content_hash()


def test_explicit_default_hashes_like_implicit_default():
    assert parse_recipe(base()).content_hash() == parse_recipe(base(lora={"r": 16})).content_hash()


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"cleaning": {"urls": "keep"}}, id="cleaning.urls"),
        pytest.param({"cleaning": {"min_confidence": 0.6}}, id="min_confidence"),
        pytest.param({"lora": {"r": 8}}, id="lora.r"),
        pytest.param({"split": {"seed": 7}}, id="split.seed"),
        pytest.param({"training": {"learning_rate": 1e-4}}, id="lr"),
        pytest.param({"prompt": {"template": "Tweet: {text}"}}, id="template"),
        pytest.param({"labels": ["positive", "negative"]}, id="label-order"),
        pytest.param({"model": {"max_length": 128}}, id="max_length"),
        pytest.param({"name": "other"}, id="name"),
    ],
)
def test_content_hash_changes_with_any_knob(overrides):
    assert parse_recipe(base(**overrides)).content_hash() != parse_recipe(base()).content_hash()
