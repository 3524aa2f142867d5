"""model.truncation: what a too-long input keeps, in both encoders and at inference, and the
token-length percentiles of the tokenized dataset."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from transformers import AutoTokenizer

from ft_pipeline.lib.data.rendering import IGNORE_INDEX, encode_plain, encode_prompts, encode_rows
from ft_pipeline.lib.data.tokenized import build_tokenized, length_percentiles
from ft_pipeline.lib.data.truncation import cut_content, encode_texts
from ft_pipeline.lib.training.keys import training_hash
from ft_pipeline.recipe import RecipeError, parse_recipe
from ft_pipeline_tests.conftest import LABELS, as_clean, fixture_rows

LONG = (
    "awful rude start "
    + " ".join(["the flight was on schedule today"] * 20)
    + " thanks amazing end"
)
TAIL = "thanks amazing end"
ASSISTANT = "<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def encoder(tiny_encoder_dir):
    return AutoTokenizer.from_pretrained(tiny_encoder_dir)


def _recipe(how: str, task: str = "classification", head: str = "lm", max_length: int = 48):
    model = {"base": "unused", "max_length": max_length, "head": head, "truncation": how}
    base = {"name": "r", "task": task, "model": model}
    if task == "classification":
        base |= {"labels": LABELS, "prompt": {"template": "Tweet: {text}\nSentiment:"}}
    if task == "instruction":
        base |= {"prompt": {"template": "{prompt}"}}
    return parse_recipe(base)


def _frame(texts, **columns) -> pd.DataFrame:
    n = len(texts)
    defaults = {"label": ["positive"] * n, "response": [None] * n, "messages": [None] * n}
    return pd.DataFrame({"text": texts, **defaults, **columns})


def _split(tokenizer, row) -> tuple[str, str]:
    """(prompt text, answer text) of an encoded lm row."""
    n_prompt = sum(t == IGNORE_INDEX for t in row["labels"])
    ids = row["input_ids"]
    return tokenizer.decode(ids[:n_prompt]), tokenizer.decode(ids[n_prompt:])


def test_cut_content_keeps_the_first_quarter_and_the_last_three_quarters():
    ids = list(range(100))
    assert cut_content(ids, 8, "head") == list(range(8))
    assert cut_content(ids, 8, "head_tail") == [0, 1, *range(94, 100)]
    assert cut_content(ids, 100, "head_tail") == ids == cut_content(ids, 200, "head")
    # shortening again (when re-rendering shifts the count) keeps the same two ends
    twice = cut_content(cut_content(ids, 40, "head_tail"), 8, "head_tail")
    assert twice == cut_content(ids, 8, "head_tail")
    with pytest.raises(ValueError, match=r"model\.truncation"):
        cut_content(ids, 8, "tail")


@pytest.mark.parametrize("how", ["head", "head_tail"])
def test_classifier_input_keeps_its_special_tokens_and_the_chosen_ends(encoder, how):
    recipe = _recipe(how, head="classifier", max_length=32)
    rows = encode_plain(_frame([LONG, "great trip"]), recipe, encoder).rows
    content = encoder(LONG, add_special_tokens=False)["input_ids"]
    long_row, short_row = rows.iloc[0], rows.iloc[1]
    ids = list(long_row["input_ids"])
    assert len(ids) == long_row["n_tokens"] == 32
    assert ids[0] == encoder.cls_token_id and ids[-1] == encoder.sep_token_id
    if how == "head":  # today's cut, exactly
        assert ids[1:-1] == content[:30]
        assert ids == encoder(LONG, truncation=True, max_length=32)["input_ids"]
    else:
        assert ids[1:-1] == content[:7] + content[-23:]
        assert encoder.decode(ids).endswith(f"{TAIL} [SEP]")
    assert long_row["truncated"] and long_row["n_tokens_full"] == len(content) + 2
    assert not short_row["truncated"]
    assert list(short_row["input_ids"]) == encoder("great trip")["input_ids"]


def test_head_is_the_tokenizers_own_cut_for_the_decoder_tokenizer_too(tokenizer):
    ids, full = encode_texts([LONG, "great trip"], _recipe("head", max_length=16), tokenizer)
    assert ids == tokenizer([LONG, "great trip"], truncation=True, max_length=16)["input_ids"]
    assert full == [len(tokenizer(t)["input_ids"]) for t in (LONG, "great trip")]


@pytest.mark.parametrize("how", ["head", "head_tail"])
def test_lm_prompt_keeps_the_template_the_chosen_ends_and_the_whole_answer(tokenizer, how):
    recipe = _recipe(how)
    encoded = encode_rows(_frame([LONG, "great trip"]), recipe, tokenizer)
    long_row, short_row = encoded.rows.iloc[0], encoded.rows.iloc[1]
    prompt, answer = _split(tokenizer, long_row)
    assert answer == "positive<|im_end|>\n"
    assert prompt.startswith("<|im_start|>user\nTweet: awful rude")
    assert prompt.endswith(f"\nSentiment:<|im_end|>\n{ASSISTANT}")
    assert (TAIL in prompt) == (how == "head_tail")
    assert long_row["truncated"] and long_row["n_tokens"] <= 48
    assert long_row["n_tokens_full"] > 48
    assert not short_row["truncated"]
    assert short_row["n_tokens_full"] == short_row["n_tokens"]


def test_instruction_and_chat_inputs_keep_their_end_and_the_answer_stays_whole(tokenizer):
    recipe = _recipe("head_tail", task="instruction")
    frame = _frame([LONG], response=["hi there friend"])
    [row] = encode_rows(frame, recipe, tokenizer).rows.to_dict("records")
    prompt, answer = _split(tokenizer, row)
    assert answer == "hi there friend<|im_end|>\n" and row["truncated"]
    assert prompt.startswith("<|im_start|>user\nawful rude") and f"{TAIL}<|im_end|>" in prompt

    messages = [
        {"role": "user", "content": "any seats"},
        {"role": "assistant", "content": "one left"},
        {"role": "user", "content": LONG},
        {"role": "assistant", "content": "booked"},
    ]
    frame = _frame(["x"], messages=[json.dumps(messages)], response=["booked"])
    chat = _recipe("head_tail", task="chat", max_length=96)
    [row] = encode_rows(frame, chat, tokenizer).rows.to_dict("records")
    prompt, answer = _split(tokenizer, row)
    assert answer == "booked<|im_end|>\n" and row["truncated"]
    assert "any seats" in prompt and "one left" in prompt  # earlier turns are never cut
    assert "<|im_start|>user\nawful rude" in prompt and f"{TAIL}<|im_end|>\n{ASSISTANT}" in prompt


def test_inference_prompts_are_cut_the_way_training_cut_them(tokenizer):
    """Serving and zero-shot evaluation encode raw texts with `encode_prompts`: with room
    for the same answer, a head_tail prompt is token for token the training one."""
    recipe = _recipe("head_tail")
    [row] = encode_rows(_frame([LONG]), recipe, tokenizer).rows.to_dict("records")
    n_prompt = sum(t == IGNORE_INDEX for t in row["labels"])
    [served] = encode_prompts([LONG], recipe, tokenizer, reserve=row["n_answer_tokens"])
    assert served == list(row["input_ids"][:n_prompt])
    [default] = encode_prompts([LONG], recipe, tokenizer)  # room for 8 answer tokens
    text = tokenizer.decode(default)
    assert len(default) <= 48 - 8 and TAIL in text and "awful rude" in text
    [head] = encode_prompts([LONG], _recipe("head"), tokenizer)
    assert TAIL not in tokenizer.decode(head)


def test_length_percentiles_of_a_known_set():
    lengths = pd.Series([*range(1, 101), None])  # a row without a length is left out
    assert length_percentiles(lengths, 64) == {
        "p50": 50,
        "p90": 90,
        "p95": 95,
        "p99": 99,
        "max": 100,
        "max_length": 64,
    }
    assert length_percentiles([7] * 3, 8) == {
        "p50": 7,
        "p90": 7,
        "p95": 7,
        "p99": 7,
        "max": 7,
        "max_length": 8,
    }
    assert length_percentiles([], 8)["max"] == 0


def test_tokenized_stats_report_lengths_before_shortening(tokenizer):
    rows = pd.DataFrame(fixture_rows(10))
    rows.loc[0, "text"] = LONG
    recipe = _recipe("head_tail")
    result = build_tokenized({"p": as_clean(rows, "p")}, recipe, tokenizer)
    pct = result.stats["token_length_percentiles"]
    kept = pd.concat([result.dataset[s].to_pandas() for s in result.dataset])
    assert pct == length_percentiles(kept["n_tokens_full"], 48)
    long_row = kept[kept["text"] == LONG].iloc[0]
    assert pct["max"] == long_row["n_tokens_full"] > 48 >= long_row["n_tokens"]
    assert pct["p50"] < 48 and pct["max_length"] == 48
    assert result.stats["truncated_rows"] == 1  # head_tail shortens the row all the same


def test_truncation_is_in_the_tokenization_and_the_adapter_keys():
    head, head_tail = _recipe("head"), _recipe("head_tail")
    assert head.tokenization_hash() != head_tail.tokenization_hash()
    assert training_hash(head) != training_hash(head_tail)
    assert head.cleaning_hash() == head_tail.cleaning_hash()
    assert parse_recipe({"name": "r", "task": "chat"}).model.truncation == "head"
    with pytest.raises(RecipeError, match=r"'model\.truncation': Input should be 'head' or"):
        parse_recipe({"name": "r", "task": "chat", "model": {"truncation": "tail"}})
