"""Chat-template rendering, answer masking and truncation, for all three task types."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from transformers import AutoTokenizer

from ft_pipeline.lib.data.rendering import IGNORE_INDEX, encode_rows
from ft_pipeline.lib.data.tokenized import build_tokenized, rows_without_answer_tokens
from ft_pipeline.recipe import parse_recipe
from ft_pipeline_tests.conftest import LABELS, as_clean, fixture_rows


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _recipe(task: str, max_length: int = 64, **extra):
    model = {"base": "unused", "max_length": max_length, "head": "lm"}
    base = {"name": "r", "task": task, "model": model}
    if task == "classification":
        base |= {"labels": LABELS, "prompt": {"template": "Tweet: {text}\nSentiment:"}}
    if task == "instruction":
        base |= {"prompt": {"template": "{prompt}"}}
    return parse_recipe(base | extra)


def _frame(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    defaults = {"label": [None] * n, "response": [None] * n, "messages": [None] * n}
    return pd.DataFrame({**defaults, **columns, "dedup_key": [f"k{i}" for i in range(n)]})


def _answer(tokenizer, row) -> str:
    return tokenizer.decode([t for t in row["labels"] if t != IGNORE_INDEX])


def test_classification_masks_everything_but_the_label(tokenizer):
    frame = _frame(text=["the flight was great", "the gate was rude"], label=LABELS[2::-2])
    encoded = encode_rows(frame, _recipe("classification"), tokenizer)
    assert encoded.dropped.empty
    for _, row in encoded.rows.iterrows():
        assert _answer(tokenizer, row) == f"{row['label']}<|im_end|>\n"
        n_masked = sum(t == IGNORE_INDEX for t in row["labels"])
        prompt = tokenizer.decode(row["input_ids"][:n_masked])
        assert prompt.endswith("<|im_start|>assistant\n") and row["text"] in prompt
        assert len(row["input_ids"]) == len(row["labels"]) == row["n_tokens"]


def test_instruction_and_chat_answers_are_the_responses(tokenizer):
    frame = _frame(text=["say hi"], response=["hi there friend"])
    [row] = encode_rows(frame, _recipe("instruction"), tokenizer).rows.to_dict("records")
    assert _answer(tokenizer, row) == "hi there friend<|im_end|>\n"

    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "any seats"},
        {"role": "assistant", "content": "one left"},
        {"role": "user", "content": "book it"},
        {"role": "assistant", "content": "booked"},
    ]
    frame = _frame(text=["x"], messages=[json.dumps(messages)], response=["booked"])
    [row] = encode_rows(frame, _recipe("chat", 256), tokenizer).rows.to_dict("records")
    assert _answer(tokenizer, row) == "booked<|im_end|>\n"
    prompt = tokenizer.decode(row["input_ids"])
    assert "one left" in prompt and prompt.count("<|im_start|>system") == 1


def test_long_input_is_shortened_but_the_answer_is_never_cut(tokenizer):
    long_text = " ".join(["the amazing friendly smooth flight"] * 40)
    frame = _frame(text=[long_text, "short great trip"], label=["positive", "negative"])
    encoded = encode_rows(frame, _recipe("classification", max_length=48), tokenizer)
    rows = encoded.rows.set_index("text")
    long_row = encoded.rows.iloc[0]
    assert long_row["truncated"] and long_row["n_tokens"] <= 48
    assert _answer(tokenizer, long_row) == "positive<|im_end|>\n"
    assert not rows.loc["short great trip", "truncated"]


def test_answer_that_cannot_fit_is_dropped_with_a_reason(tokenizer):
    frame = _frame(text=["ask"], response=[" ".join(["amazing"] * 80)])
    encoded = encode_rows(frame, _recipe("instruction", max_length=32), tokenizer)
    assert encoded.rows.empty
    [reason] = encoded.dropped["reason"].tolist()
    assert "max_length is 32" in reason
    assert encoded.dropped["reason_code"].tolist() == ["too_long_for_max_length"]


def test_build_tokenized_accounts_for_every_row_and_reports_truncation(tokenizer):
    rows = pd.DataFrame(fixture_rows(20))
    rows.loc[0, "text"] = " ".join(["the amazing friendly smooth flight"] * 40)
    frame = as_clean(rows, "p")
    dup = frame.iloc[[3]].assign(source="q", source_row=1)
    recipe = _recipe("classification", max_length=48)
    result = build_tokenized({"p": frame, "q": dup}, recipe, tokenizer)
    s = result.stats
    assert s["rows_in"] == 61 == s["rows_out"] + s["rows_dropped"]
    assert s["cross_partition_duplicates"] == 1
    assert "of p row 4" in result.dropped["reason"].iloc[0]
    assert s["truncated_rows"] == 1 and s["truncation_rate"] == pytest.approx(1 / 60)
    assert rows_without_answer_tokens(result.dataset["train"]) == 0
    assert set(result.dataset["train"]["label_id"]) == {0, 1, 2}
