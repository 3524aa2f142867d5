"""What a too-long input keeps: one rule for training, evaluation and serving.

`model.truncation` decides which content tokens of an input longer than its budget stay:
`head` keeps the first ones (the tokenizer's usual cut, and the default); `head_tail` keeps
the first quarter and the last three quarters, the split of Sun et al. 2019 ("How to
Fine-Tune BERT for Text Classification?": 128 head + 382 tail tokens of 510 was their best
on long reviews), so a document's opening and its conclusion both reach the model.

Only content is cut: the model's own special tokens ([CLS] / [SEP]) and the chat template
around a prompt always stay. An adapter trained on one kind of cut must be evaluated and
served on the same kind, so every place that shortens a model input goes through here
(`rendering` for the chat-templated lm head, `encode_texts` for the plain classifier input).
"""

from __future__ import annotations

from typing import Any

from ft_pipeline.recipe import Recipe

HEAD_SHARE = 4  # head_tail keeps keep // HEAD_SHARE tokens from the start, the rest from the end


def cut_content(ids: list[int], keep: int, truncation: str) -> list[int]:
    """`keep` of the content token ids `ids`: the first ones (head), or the first quarter
    and the last three quarters (head_tail). Cutting a cut again keeps the same ends."""
    if keep >= len(ids):
        return list(ids)
    if keep <= 0:
        return []
    if truncation == "head":
        return ids[:keep]
    if truncation != "head_tail":
        raise ValueError(f"model.truncation must be 'head' or 'head_tail', got {truncation!r}")
    head = keep // HEAD_SHARE
    return ids[:head] + ids[len(ids) - (keep - head) :]


def encode_texts(
    texts: list[str], recipe: Recipe, tokenizer: Any
) -> tuple[list[list[int]], list[int]]:
    """(token ids, untruncated lengths) of raw texts with the model's own special tokens,
    each cut to `model.max_length` by `model.truncation` (the classifier head's input).

    The special tokens the tokenizer adds before and after the text stay; only the tokens
    between them are cut. With `head` the ids are what `tokenizer(..., truncation=True)`
    gives for a right-truncating tokenizer.
    """
    if not texts:
        return [], []
    max_length, how = recipe.model.max_length, recipe.model.truncation
    # Whole texts on purpose (cut below): no "longer than the maximum" warning for them.
    enc = tokenizer(texts, add_special_tokens=True, return_special_tokens_mask=True, verbose=False)
    out = []
    for ids, special in zip(enc["input_ids"], enc["special_tokens_mask"], strict=True):
        if len(ids) <= max_length:
            out.append(list(ids))
            continue
        start = next((i for i, s in enumerate(special) if not s), len(ids))
        end = len(ids) - next((i for i, s in enumerate(reversed(special)) if not s), 0)
        room = max_length - start - (len(ids) - end)
        out.append([*ids[:start], *cut_content(ids[start:end], room, how), *ids[end:]])
    return out, [len(ids) for ids in enc["input_ids"]]
