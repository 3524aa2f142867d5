"""Scoring: label probabilities from one forward pass, answer loss, free generation.

Classification never parses generated text: each label option is scored by the model's
log-probability of its tokens after the prompt. When the labels' first tokens differ (the
usual case) one forward pass with the head applied at the last position is enough.

The tokens every prompt starts with (system prompt, chat header) are run once and kept as a
KV cache; each batch then runs only the rest of its prompts (`ft_pipeline.lib.model.prefix_cache`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ft_pipeline.lib.data.rendering import render
from ft_pipeline.lib.model.modeling import (
    IGNORE_INDEX,
    body_and_head,
    collate,
    hidden_states,
    last_token_logprobs,
)
from ft_pipeline.lib.model.prefix_cache import PrefixCache, plan_prefix, strip_prefix

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class LabelTokens:
    """Token ids of each label as the chat template writes it (shared suffix removed)."""

    labels: list[str]
    ids: list[list[int]]

    @property
    def single_pass(self) -> bool:
        firsts = [ids[0] for ids in self.ids]
        return len(set(firsts)) == len(firsts)


def label_tokens(tokenizer: Any, labels: Sequence[str]) -> LabelTokens:
    """Tokenize each label as an assistant answer and strip the end-of-turn suffix."""
    probe = [{"role": "user", "content": "x"}]
    ids = [
        tokenizer(render(tokenizer, probe, lab)[1], add_special_tokens=False)["input_ids"]
        for lab in labels
    ]
    while all(len(x) > 1 for x in ids) and len({x[-1] for x in ids}) == 1:
        ids = [x[:-1] for x in ids]
    return LabelTokens(list(labels), ids)


def prompt_ids(input_ids: Sequence[int], labels: Sequence[int]) -> list[int]:
    """The prompt part of a tokenized row: everything before the first answer token."""
    n = next(i for i, t in enumerate(labels) if t != IGNORE_INDEX)
    return list(input_ids[:n])


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield start, min(n, start + size)


@torch.inference_mode()
def score_labels(
    model: Any,
    prompts: Sequence[Sequence[int]],
    tokens: LabelTokens,
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
    prefix_cache: bool = True,
) -> np.ndarray:
    """Probabilities over the labels, shape (rows, labels), normalised over the options.

    With `prefix_cache` the prompts' common token prefix is run once and reused from a KV
    cache, where the model supports it and the prefix is long enough (same results)."""
    model.eval()
    out = np.zeros((len(prompts), len(tokens.labels)), dtype=np.float64)
    firsts = torch.tensor([ids[0] for ids in tokens.ids], device=device)
    order = np.argsort([len(p) for p in prompts])  # similar lengths together: less padding
    prefix = None
    if prefix_cache:
        with _autocast(device, dtype):
            prefix = plan_prefix(model, prompts, device)
    for start, stop in _batches(len(prompts), batch_size):
        rows = order[start:stop]
        chunk = [prompts[i] for i in rows]
        with _autocast(device, dtype):
            if tokens.single_pass:
                scores = _next_token_logprobs(model, chunk, pad_id, device, prefix)[:, firsts]
            else:
                scores = _sequence_scores(model, chunk, tokens, pad_id, device, prefix)
        out[rows] = torch.log_softmax(scores.float(), dim=-1).exp().cpu().numpy()
        if progress:
            progress(stop, len(prompts))
    return out


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def _hidden(model, batch, prefix: PrefixCache | None) -> torch.Tensor:
    """Last hidden states of `batch` (its rows already stripped of `prefix`)."""
    if prefix is None:
        return hidden_states(model, batch)
    return prefix.hidden_states(model, batch)


def _next_token_logprobs(model, prompts, pad_id, device, prefix: PrefixCache | None):
    """Next-token log-probs after each prompt; shape (rows, vocabulary)."""
    if prefix is None:
        return last_token_logprobs(model, collate(prompts, pad_id).to(device))
    batch = collate(strip_prefix(prompts, prefix), pad_id).to(device)
    hidden = _hidden(model, batch, prefix)
    last = batch.attention_mask.sum(dim=1) - 1
    picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    _, head = body_and_head(model)
    return torch.log_softmax(head(picked).float(), dim=-1)


def _sequence_scores(
    model, prompts, tokens: LabelTokens, pad_id, device, prefix: PrefixCache | None = None
) -> torch.Tensor:
    """Sum of label-token log-probs for every (prompt, label) pair; shape (rows, labels)."""
    seqs, labels = [], []
    for p in prompts:
        for ids in tokens.ids:
            seqs.append(list(p) + ids)
            labels.append([IGNORE_INDEX] * len(p) + ids)
    batch = collate(strip_prefix(seqs, prefix), pad_id, strip_prefix(labels, prefix)).to(device)
    _, head = body_and_head(model)
    hidden = _hidden(model, batch, prefix)
    targets = batch.labels[:, 1:]
    where = targets != IGNORE_INDEX
    logp = torch.log_softmax(head(hidden[:, :-1][where]).float(), dim=-1)
    picked = logp.gather(1, targets[where].unsqueeze(1)).squeeze(1)
    row_of = torch.nonzero(where)[:, 0]
    sums = torch.zeros(len(seqs), device=picked.device).index_add_(0, row_of, picked)
    return sums.view(len(prompts), len(tokens.ids))


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


@torch.inference_mode()
def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    device: torch.device,
    max_new_tokens: int = 64,
    batch_size: int = 8,
) -> list[str]:
    """Greedy answers for instruction/chat evaluation (left-padded batches)."""
    model.eval()
    answers: list[str] = []
    pad = tokenizer.pad_token_id
    for start, stop in _batches(len(prompts), batch_size):
        chunk = prompts[start:stop]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(chunk):
            ids[i, width - len(p) :] = torch.as_tensor(p)
            mask[i, width - len(p) :] = 1
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
        answers += tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return [a.strip() for a in answers]
