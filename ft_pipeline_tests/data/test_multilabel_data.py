"""task multilabel, the data half: recipe rules, reading label sets, quarantine, the gate,
and the tokenized dataset (multi-hot `label_ids`, a split stratified on the rarest label)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ft_pipeline.lib.data.gates import labels_in_set
from ft_pipeline.lib.data.label_sets import label_set, multi_hot, rarest_label
from ft_pipeline.lib.data.readers import ROW_COLUMN, schema_problems, unmapped_columns
from ft_pipeline.lib.data.splits import leaking_keys
from ft_pipeline.lib.data.tokenized import (
    build_tokenized,
    rows_without_answer_tokens,
    split_config,
    split_summary,
)
from ft_pipeline.recipe import RecipeError, parse_recipe
from ft_pipeline_tests.data.test_cleaning import check_accounting, clean, raw_frame
from ft_pipeline_tests.emotions import EMOTIONS, emotion_rows

BASE = {"name": "emo", "task": "multilabel", "labels": EMOTIONS}


def recipe(**overrides):
    return parse_recipe({**BASE, **overrides})


RECIPE = recipe(label_aliases={"angry": "anger", "happy": "joy"})


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"labels": ["anger"]}, ["'labels'", "multilabel needs at least two labels"]),
        ({"model": {"head": "lm"}}, ["'model'", "needs model.head 'classifier'", "remove"]),
        (
            {"data": {"columns": {"label_columns": {"anger": "a", "joy": "j"}}}},
            ["label_columns", "labels without a column: ['sadness', 'fear']"],
        ),
        (
            {"data": {"columns": {"label_columns": {**{e: e for e in EMOTIONS}, "awe": "x"}}}},
            ["unknown labels: ['awe']"],
        ),
        ({"multilabel": {"separator": " "}}, ["multilabel.separator", "use , ; or |"]),
        ({"multilabel": {"max_labels": 0}}, ["multilabel.max_labels"]),
    ],
)
def test_bad_multilabel_recipes_name_the_field_and_the_fix(overrides, words):
    with pytest.raises(RecipeError) as err:
        recipe(**overrides)
    for word in words:
        assert word in str(err.value)


def test_label_columns_belong_to_multilabel_and_the_head_defaults_to_classifier():
    assert RECIPE.model.head == "classifier"
    mapping = {"columns": {"label_columns": {"a": "x", "b": "y"}}}
    with pytest.raises(RecipeError, match="applies to task multilabel, not 'classification'"):
        parse_recipe({"name": "c", "labels": ["a", "b"], "data": mapping})
    # Only a multilabel recipe hashes its multilabel section.
    plain = parse_recipe({"name": "c", "labels": ["a", "b"]})
    assert (
        plain.cleaning_hash()
        == parse_recipe(
            {"name": "c", "labels": ["a", "b"], "multilabel": {"separator": ";"}}
        ).cleaning_hash()
    )
    assert (
        RECIPE.cleaning_hash()
        != recipe(
            label_aliases={"angry": "anger", "happy": "joy"}, multilabel={"separator": ";"}
        ).cleaning_hash()
    )


def test_label_lists_json_separated_aliases_and_case_are_one_stored_set():
    records = [
        {"text": "one", "label": '["sadness", "anger"]'},
        {"text": "two", "label": "Angry, joy"},
        {"text": "three", "label": ""},
        {"text": "four", "label": "[]"},
        {"text": "five", "label": ["fear", "fear", "joy"]},  # JSONL/Parquet lists
        {"text": "six", "label": "joy,,sadness"},
    ]
    result = clean(records, RECIPE)
    check_accounting(records, result)
    assert result.quarantined.empty
    assert [label_set(v) for v in result.kept["label"]] == [
        ["anger", "sadness"],  # recipe order, whatever the data's order
        ["anger", "joy"],
        [],
        [],
        ["joy", "fear"],
        ["joy", "sadness"],
    ]
    assert result.kept["label"].iloc[0] == '["anger", "sadness"]'


def test_a_separator_of_the_recipe_splits_strings():
    semi = recipe(multilabel={"separator": ";"})
    result = clean([{"text": "a", "label": "anger;fear"}, {"text": "b", "label": "joy"}], semi)
    assert [label_set(v) for v in result.kept["label"]] == [["anger", "fear"], ["joy"]]


def test_unknown_and_malformed_labels_are_quarantined_naming_row_column_and_label():
    records = [
        {"text": "fine", "label": "joy"},
        {"text": "bad", "label": "joy,rage"},
        {"text": "broken", "label": '["joy", '},
        {"text": "numbers", "label": "[1, 2]"},
    ]
    result = clean(records, RECIPE)
    check_accounting(records, result)
    q = result.quarantined.set_index(ROW_COLUMN)
    assert q.loc[2, "reason_code"] == "unknown_label"
    assert "row 2" in q.loc[2, "reason"] and "'rage'" in q.loc[2, "reason"]
    assert "column 'label'" in q.loc[2, "reason"] and "label_aliases" in q.loc[2, "reason"]
    assert q.loc[3, "reason_code"] == "invalid_label_list"
    assert q.loc[4, "reason_code"] == "invalid_label_list"
    assert q.loc[2, "text_original"] == "bad"


def test_empty_sets_and_too_many_labels_follow_the_recipe():
    strict = recipe(multilabel={"allow_empty": False, "max_labels": 1})
    records = [
        {"text": "none", "label": ""},
        {"text": "two", "label": "joy,fear"},
        {"text": "one", "label": "fear"},
    ]
    result = clean(records, strict)
    check_accounting(records, result)
    q = result.quarantined.set_index(ROW_COLUMN)
    assert q.loc[1, "reason_code"] == "empty_label_set"
    assert "multilabel.allow_empty" in q.loc[1, "reason"]
    assert q.loc[2, "reason_code"] == "too_many_labels"
    assert "multilabel.max_labels is 1" in q.loc[2, "reason"]
    assert result.kept[ROW_COLUMN].tolist() == [3]


def test_one_zero_one_column_per_label():
    columns = {e: f"is_{e}" for e in EMOTIONS}
    r = recipe(data={"columns": {"text": "text", "label": None, "label_columns": columns}})
    mapping = r.data.columns
    records = [
        {"text": "a", "is_anger": "1", "is_joy": "0", "is_sadness": "1", "is_fear": "0"},
        {"text": "b", "is_anger": "0", "is_joy": "true", "is_sadness": "no", "is_fear": "0"},
        {"text": "c", "is_anger": "2", "is_joy": "0", "is_sadness": "0", "is_fear": "0"},
        {"text": "d", "is_anger": "", "is_joy": "0", "is_sadness": "0", "is_fear": "0"},
    ]
    result = clean(records, r, mapping)
    check_accounting(records, result)
    assert [label_set(v) for v in result.kept["label"]] == [["anger", "sadness"], ["joy"]]
    q = result.quarantined.set_index(ROW_COLUMN)
    assert q.loc[3, "reason_code"] == "invalid_label_value"
    assert "row 3" in q.loc[3, "reason"] and "'is_anger'" in q.loc[3, "reason"]
    assert "expected 0 or 1" in q.loc[3, "reason"]
    assert q.loc[4, "reason_code"] == "missing_label"
    # The schema check wants every label column; none of them is "unmapped".
    frame = raw_frame([{"text": "a", "is_anger": "1", "is_joy": "0", "is_sadness": "0"}])
    assert schema_problems(frame, "multilabel", mapping) == [
        "missing column 'is_fear' (the recipe's 'label_columns.fear')"
    ]
    assert unmapped_columns(raw_frame(records), mapping) == []


def test_the_labels_gate_checks_every_label_of_every_set_and_the_set_sizes():
    r = recipe(multilabel={"max_labels": 2})
    kept = clean([{"text": "a", "label": "joy"}, {"text": "b", "label": "fear,anger"}], r).kept
    assert labels_in_set(kept, r).success
    tampered = kept.copy()
    tampered["label"] = ['["joy", "awe"]', '["anger", "joy", "fear"]']
    outcome = labels_in_set(tampered, r)
    assert not outcome.success
    failed = {x["expectation"]: x for x in outcome.summary["results"] if not x["success"]}
    assert failed["expect_column_values_to_be_in_set"]["partial_unexpected_list"] == ["awe"]
    assert failed["expect_column_values_to_be_between"]["unexpected_count"] == 1


def test_multi_hot_and_rarest_label():
    sets = [["anger", "joy"], ["joy"], [], ["joy", "fear"]]
    assert multi_hot(sets, EMOTIONS).tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0] * 4, [0, 1, 0, 1]]
    assert rarest_label(sets) == ["anger", "joy", "<none>", "fear"]


def test_tokenized_dataset_holds_multi_hot_label_ids_and_a_stratified_split(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = emotion_rows(240, seed=3)
    records = [{"text": r["text"], "label": json.dumps(r["labels"])} for r in rows]
    r = recipe(model={"base": str(tiny_model_dir), "max_length": 64})
    kept = clean(records, r).kept
    result = build_tokenized({"p": kept}, r, tokenizer)
    ds = result.dataset
    assert result.stats["stratified"] is True
    assert split_config(r)["stratify"] == "rarest_label"
    train = ds["train"].to_pandas()
    for labels, ids in zip(train["label"], train["label_ids"], strict=True):
        assert list(ids) == multi_hot([label_set(labels)], EMOTIONS)[0].tolist()
    summary = split_summary(ds, "multilabel")
    for split in ("train", "validation", "test"):
        assert set(summary["label_distribution"][split]) == set(EMOTIONS), split
    both = pd.concat([ds[s].to_pandas() for s in ds], ignore_index=True)
    assert leaking_keys(both, both["split"]) == []
    assert "stratum" not in ds["train"].column_names
    assert rows_without_answer_tokens(ds["train"], "classifier", len(EMOTIONS)) == 0
    assert rows_without_answer_tokens(ds["train"], "classifier", 3) == len(ds["train"])
