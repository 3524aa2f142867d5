"""Shared-prefix KV caching for label scoring.

Every chat-templated prompt of a recipe starts with the same tokens (system prompt, user
header). The prefix is run once (batch 1, with a cache); each scoring batch then runs only
the suffixes, attending to that cache expanded to the batch size, with the attention mask
over prefix + suffix and the positions continuing after the prefix. The results equal a
full forward pass over the whole prompts (up to floating-point rounding).

Only plain decoders qualify: a causal LM (possibly wrapped by peft's `PeftModel`) whose
transformer body takes a cache and fills it with full-attention `DynamicLayer`s. Anything
else (encoders, sliding-window or linear-attention layers, a body without an LM head)
keeps the uncached path.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ft_pipeline.lib.model.modeling import Batch, body_and_head, causal_lm

# Below this many shared tokens the extra forward call is not worth it.
MIN_PREFIX_TOKENS = 8
# A single row saves nothing: the prefix is computed once either way.
MIN_ROWS = 2


def common_prefix_length(seqs: Sequence[Sequence[int]]) -> int:
    """Tokens shared by the start of every sequence, leaving at least one token of the
    shortest one outside the prefix (the last prompt position must be in every suffix)."""
    if not seqs:
        return 0
    first = seqs[0]
    n = max(0, min(len(s) for s in seqs) - 1)
    for s in seqs[1:]:
        n = next((i for i in range(n) if s[i] != first[i]), n)
        if n == 0:
            break
    return n


def cache_kwarg(model: Any) -> str | None:
    """The keyword under which the model's body takes a KV cache (`cache` in transformers
    5.24, where `past_key_values` is a deprecated alias; `past_key_values` in older ones),
    or None when the prefix path is not supported."""
    lm = causal_lm(model)
    config = getattr(lm, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return None
    if not getattr(config, "is_causal", True) or not callable(getattr(lm, "can_generate", None)):
        return None
    if not lm.can_generate():  # encoders (BertModel, *ForMaskedLM) and classifier heads
        return None
    try:
        body, head = body_and_head(model)
    except AttributeError:
        return None
    if head is None or not hasattr(body, "forward"):
        return None
    params = inspect.signature(body.forward).parameters
    return next((name for name in ("cache", "past_key_values") if name in params), None)


@dataclass(frozen=True)
class PrefixCache:
    """Per-layer keys and values of a shared prefix, batch size 1."""

    length: int
    kwarg: str
    kv: tuple[tuple[torch.Tensor, torch.Tensor], ...]

    @classmethod
    def build(cls, model: Any, ids: Sequence[int], device: torch.device) -> PrefixCache | None:
        """Run the prefix once (under the caller's autocast, so the cache has the dtype the
        suffix passes will produce); None when the model or its cache does not qualify."""
        kwarg = cache_kwarg(model)
        if kwarg is None or not ids:
            return None
        from transformers.cache_utils import DynamicCache, DynamicLayer

        body, _ = body_and_head(model)
        cache = DynamicCache(config=body.config)
        x = torch.tensor([list(ids)], dtype=torch.long, device=device)
        body(input_ids=x, attention_mask=torch.ones_like(x), use_cache=True, **{kwarg: cache})
        layers = cache.layers
        if not layers or any(
            type(layer) is not DynamicLayer or layer.get_seq_length() != len(ids)
            for layer in layers
        ):
            return None  # sliding-window, linear-attention or shared-KV layers: not handled
        return cls(len(ids), kwarg, tuple((layer.keys, layer.values) for layer in layers))

    def expanded(self, batch_size: int) -> Any:
        """A fresh `DynamicCache` holding the prefix for `batch_size` rows (the forward
        appends to it, so every batch needs its own; the stored tensors are never written)."""
        from transformers.cache_utils import DynamicCache

        return DynamicCache(
            ddp_cache_data=[
                (k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1))
                for k, v in self.kv
            ]
        )

    def hidden_states(self, model: Any, batch: Batch) -> torch.Tensor:
        """Last hidden states of the suffixes in `batch` (right-padded, prefix removed),
        each attending to the prefix; shape (rows, suffix width, hidden)."""
        body, _ = body_and_head(model)
        rows, width = batch.input_ids.shape
        mask = batch.attention_mask
        mask = torch.cat([mask.new_ones((rows, self.length)), mask], dim=1)
        positions = torch.arange(self.length, self.length + width, device=mask.device)
        out = body(
            input_ids=batch.input_ids,
            attention_mask=mask,
            position_ids=positions.unsqueeze(0).expand(rows, -1),
            use_cache=True,
            **{self.kwarg: self.expanded(rows)},
        )
        return out.last_hidden_state


def plan_prefix(
    model: Any, prompts: Sequence[Sequence[int]], device: torch.device
) -> PrefixCache | None:
    """The shared-prefix cache for these prompts when it pays and the model supports it."""
    if len(prompts) < MIN_ROWS:
        return None
    n = common_prefix_length(prompts)
    if n < MIN_PREFIX_TOKENS:
        return None
    return PrefixCache.build(model, list(prompts[0][:n]), device)


def strip_prefix(seqs: Sequence[Sequence[int]], prefix: PrefixCache | None) -> list[list[int]]:
    n = prefix.length if prefix else 0
    return [list(s[n:]) for s in seqs]
