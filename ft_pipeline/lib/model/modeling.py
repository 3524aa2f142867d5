"""Model plumbing shared by training, scoring and deployment.

The LM head over a ~49k vocabulary is a large share of a small model's compute. Everything
here runs the transformer body once, then applies the head only at the positions that are
needed: answer tokens for the loss, the last prompt token for label scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ft_pipeline.lib.data.rendering import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "Batch", "answer_loss", "collate", "last_token_logprobs"]


@dataclass
class Batch:
    """Right-padded token ids with attention mask and (optionally) masked labels."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device) -> Batch:
        labels = None if self.labels is None else self.labels.to(device)
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), labels)


def collate(
    ids: Sequence[Sequence[int]], pad_id: int, labels: Sequence[Sequence[int]] | None = None
) -> Batch:
    """Pad a list of sequences to the longest one (dynamic padding)."""
    width = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    out_labels = torch.full((len(ids), width), IGNORE_INDEX, dtype=torch.long) if labels else None
    for i, seq in enumerate(ids):
        input_ids[i, : len(seq)] = torch.as_tensor(seq)
        mask[i, : len(seq)] = 1
        if out_labels is not None:
            out_labels[i, : len(seq)] = torch.as_tensor(labels[i])
    return Batch(input_ids, mask, out_labels)


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else CPU."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def pick_dtype(preference: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: the recipe's, or (auto) bf16 where the hardware runs it natively,
    fp16 on a GPU without bf16, else none (fp32)."""
    if preference == "fp32":
        return None
    if preference == "bf16":
        return torch.bfloat16
    if preference == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


def causal_lm(model: Any) -> Any:
    """The underlying *ForCausalLM of a PEFT model (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def body_and_head(model: Any) -> tuple[Any, Any]:
    """(transformer body, LM head) of a causal LM, LoRA layers included."""
    lm = causal_lm(model)
    return getattr(lm, lm.base_model_prefix), lm.get_output_embeddings()


def hidden_states(model: Any, batch: Batch) -> torch.Tensor:
    body, _ = body_and_head(model)
    return body(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state


def answer_loss(model: Any, batch: Batch) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over answer tokens, and how many there were."""
    assert batch.labels is not None
    _, head = body_and_head(model)
    hidden = hidden_states(model, batch)[:, :-1]
    targets = batch.labels[:, 1:]
    where = targets != IGNORE_INDEX
    logits = head(hidden[where]).float()
    return torch.nn.functional.cross_entropy(logits, targets[where]), int(where.sum())


def last_token_logprobs(model: Any, batch: Batch) -> torch.Tensor:
    """Log-probabilities of the next token after each (right-padded) sequence."""
    _, head = body_and_head(model)
    hidden = hidden_states(model, batch)
    last = batch.attention_mask.sum(dim=1) - 1
    picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return torch.log_softmax(head(picked).float(), dim=-1)


def load_causal_lm(path: str | Path, device: torch.device) -> Any:
    """A float32 causal LM from a local folder (fp32 master weights; autocast does the rest)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    return model.to(device)
