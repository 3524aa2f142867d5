"""Render rows through the base model's chat template and mask all but the answer.

A row becomes `prompt_ids + answer_ids`; `labels` is -100 on the prompt so the loss is on
the answer only. When a row is longer than `max_length`, the row's *content* (text, prompt,
last user message) is shortened by `model.truncation` (its first tokens, or its first and
last ones: `truncation.cut_content`) and the row is marked truncated; the answer and the chat
template's tokens are never cut. A row whose answer cannot fit is dropped with a reason,
never silently cut. `n_tokens_full` records each row's length before any shortening.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ft_pipeline.lib.data.truncation import cut_content, encode_texts
from ft_pipeline.recipe import Recipe

IGNORE_INDEX = -100
MAX_SHORTEN_ROUNDS = 4
DROPPED_EXTRA = ["reason_code", "reason", "n_tokens_full"]


@dataclass
class EncodedRows:
    """Token columns for the kept rows, plus rows that could not be encoded."""

    # input rows + input_ids, labels, n_tokens, n_answer_tokens, truncated, n_tokens_full
    rows: pd.DataFrame
    dropped: pd.DataFrame  # input rows + reason_code, reason, n_tokens_full


def conversation(
    row: dict[str, Any], recipe: Recipe, content: str | None = None
) -> tuple[list[dict], str]:
    """(messages before the answer, answer) for one clean row; `content` overrides the input."""
    system = [{"role": "system", "content": recipe.prompt.system}] if recipe.prompt.system else []
    if recipe.task == "chat":
        messages = json.loads(row["messages"])
        if content is not None:
            last_user = max(i for i, m in enumerate(messages[:-1]) if m["role"] == "user")
            messages[last_user] = {**messages[last_user], "content": content}
        has_system = messages[0]["role"] == "system"
        return (messages[:-1] if has_system else system + messages[:-1]), messages[-1]["content"]
    text = row["text"] if content is None else content
    if recipe.task == "classification":
        user, answer = recipe.prompt.template.format(text=text), row["label"]
    else:
        user, answer = recipe.prompt.template.format(prompt=text), row["response"]
    return [*system, {"role": "user", "content": user}], answer


def input_content(row: dict[str, Any], recipe: Recipe) -> str:
    """The part of a row that may be shortened to fit `max_length`."""
    if recipe.task == "chat":
        messages = json.loads(row["messages"])
        return next(m["content"] for m in reversed(messages[:-1]) if m["role"] == "user")
    return row["text"]


def render(tokenizer: Any, prompt_messages: list[dict], answer: str) -> tuple[str, str]:
    """(prompt text ending in the assistant header, answer text as the template writes it)."""
    prompt = tokenizer.apply_chat_template(
        prompt_messages, tokenize=False, add_generation_prompt=True
    )
    full = tokenizer.apply_chat_template(
        [*prompt_messages, {"role": "assistant", "content": answer}], tokenize=False
    )
    if not full.startswith(prompt):
        raise ValueError(
            "the tokenizer's chat template does not render the generation prompt as a prefix "
            "of the full conversation; answer masking needs that"
        )
    return prompt, full[len(prompt) :]


def _ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def _prompt_ids(row, recipe, tokenizer, content_ids: list[int]) -> list[int]:
    """The row's prompt ids with its content replaced by these content tokens."""
    messages, answer = conversation(row, recipe, tokenizer.decode(content_ids))
    return _ids(tokenizer, [render(tokenizer, messages, answer)[0]])[0]


def _shorten(row, recipe, tokenizer, n_prompt: int, n_answer: int) -> tuple[list[int] | None, str]:
    """Cut the row's content by `model.truncation` until prompt + answer fit (decoding and
    re-rendering can shift the count, hence the rounds); (prompt ids or None, reason)."""
    max_length = recipe.model.max_length
    content_ids = _ids(tokenizer, [input_content(row, recipe)])[0]
    for _ in range(MAX_SHORTEN_ROUNDS):
        keep = len(content_ids) - (n_prompt + n_answer - max_length)
        if keep < 1:
            return (
                None,
                f"prompt and answer need {n_prompt + n_answer} tokens, max_length is {max_length}",
            )
        content_ids = cut_content(content_ids, keep, recipe.model.truncation)
        prompt_ids = _prompt_ids(row, recipe, tokenizer, content_ids)
        n_prompt = len(prompt_ids)
        if n_prompt + n_answer <= max_length:
            return prompt_ids, ""
    return None, f"could not shorten the prompt below {max_length} tokens"


def encode_rows(rows: pd.DataFrame, recipe: Recipe, tokenizer: Any) -> EncodedRows:
    """Tokenize every row; label ids are -100 everywhere but the answer tokens."""
    records = rows.to_dict(orient="records")
    rendered = [render(tokenizer, *conversation(r, recipe)) for r in records]
    prompt_ids = _ids(tokenizer, [p for p, _ in rendered])
    answer_ids = _ids(tokenizer, [a for _, a in rendered])
    max_length = recipe.model.max_length
    kept, dropped = [], []
    for row, p_ids, a_ids in zip(records, prompt_ids, answer_ids, strict=True):
        truncated, full = False, len(p_ids) + len(a_ids)
        if not a_ids:
            why = {"reason_code": "empty_answer", "reason": "answer has no tokens"}
            dropped.append({**row, **why, "n_tokens_full": full})
            continue
        if full > max_length:
            p_ids, why = _shorten(row, recipe, tokenizer, len(p_ids), len(a_ids))
            if p_ids is None:
                code = "too_long_for_max_length"
                dropped.append({**row, "reason_code": code, "reason": why, "n_tokens_full": full})
                continue
            truncated = True
        kept.append(
            {
                **row,
                "input_ids": p_ids + a_ids,
                "labels": [IGNORE_INDEX] * len(p_ids) + a_ids,
                "n_tokens": len(p_ids) + len(a_ids),
                "n_answer_tokens": len(a_ids),
                "truncated": truncated,
                "n_tokens_full": full,
            }
        )
    extra = ["input_ids", "labels", "n_tokens", "n_answer_tokens", "truncated", "n_tokens_full"]
    kept_df = pd.DataFrame(kept, columns=[*rows.columns, *extra])
    dropped_df = pd.DataFrame(dropped, columns=[*rows.columns, *DROPPED_EXTRA])
    return EncodedRows(kept_df, dropped_df)


def encode_prompts(
    texts: list[str], recipe: Recipe, tokenizer: Any, reserve: int = 8
) -> list[list[int]]:
    """Prompt token ids for raw input texts (inference): the same template as training.

    A text too long for `max_length - reserve` tokens (room for the answer) is shortened
    the way training shortened it (`_shorten`, by `model.truncation`); a prompt whose
    template alone is too long keeps one content token. Chat conversations are not cut.
    """
    budget = recipe.model.max_length - reserve
    placeholder = recipe.labels[0] if recipe.labels else ""
    out = []
    for text in texts:
        row = {"text": text, "label": placeholder, "response": placeholder}
        if recipe.task == "chat":
            # For chat models the input is the conversation so far, as a JSON list.
            turns = (
                json.loads(text)
                if text.lstrip().startswith("[")
                else [{"role": "user", "content": text}]
            )
            row["messages"] = json.dumps([*turns, {"role": "assistant", "content": ""}])
        ids = _ids(tokenizer, [render(tokenizer, *conversation(row, recipe))[0]])[0]
        if len(ids) > budget and recipe.task != "chat":
            shortened, _ = _shorten(row, recipe, tokenizer, len(ids), reserve)
            if shortened is None:
                one = cut_content(_ids(tokenizer, [text])[0], 1, recipe.model.truncation)
                shortened = _prompt_ids(row, recipe, tokenizer, one)
            ids = shortened
        out.append(ids)
    return out


def encode_plain(rows: pd.DataFrame, recipe: Recipe, tokenizer: Any) -> EncodedRows:
    """Classifier head: the raw text with the model's own special tokens; the target is
    the label id, so only the input can be cut (by `model.truncation`, marked truncated)."""
    cut, full = encode_texts(rows["text"].tolist(), recipe, tokenizer)
    kept = rows.assign(
        input_ids=cut,
        labels=[[] for _ in cut],
        n_tokens=[len(ids) for ids in cut],
        n_answer_tokens=0,
        truncated=[n > recipe.model.max_length for n in full],
        n_tokens_full=full,
    )
    return EncodedRows(kept, pd.DataFrame(columns=[*rows.columns, *DROPPED_EXTRA]))
