"""Task heads: how a model is built, batched and scored for each `model.head`.

- `lm`: the causal LM predicts the answer tokens after the chat prompt (next-token loss on
  the answer only; labels are scored from the LM head).
- `classifier`: a sequence-classification head on the pre-trained body
  (`AutoModelForSequenceClassification`: `LlamaForSequenceClassification` for SmolLM2,
  `BertForSequenceClassification` for MiniLM). LoRA adapts the body, the head is trained
  fully (peft's `modules_to_save` for SEQ_CLS), the loss is cross-entropy over labels.
  Under `task: multilabel` the same head has one sigmoid per label (transformers'
  `problem_type="multi_label_classification"`) and the loss is binary cross-entropy with
  logits against the row's multi-hot `label_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ft_pipeline.lib.model.modeling import IGNORE_INDEX, Batch, answer_loss, collate, load_causal_lm
from ft_pipeline.recipe import Recipe

Row = tuple[Sequence[int], Any]  # (input_ids, token labels | label id)


def load_classifier(
    path: str | Path,
    labels: Sequence[str],
    device: torch.device,
    pad_id: int,
    multilabel: bool = False,
):
    """A float32 sequence classifier over `labels` (head freshly initialised if absent);
    `multilabel`: one independent sigmoid per label."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized head" is expected, not news
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path),
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            problem_type="multi_label_classification" if multilabel else None,
            dtype=torch.float32,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = pad_id  # decoders find the last token through it
    return model.to(device)


def classifier_logits(model: Any, batch: Batch) -> torch.Tensor:
    return model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.float()


@dataclass(frozen=True)
class Head:
    """One head's model construction, batching and loss."""

    name: str
    labels: tuple[str, ...] = ()
    label_smoothing: float = 0.0  # classifier: of the training loss only (`loss(train=True)`)
    multilabel: bool = False  # classifier: a sigmoid per label, BCE loss on multi-hot targets

    @property
    def task_type(self) -> str:
        return "SEQ_CLS" if self.name == "classifier" else "CAUSAL_LM"

    def load(self, base_dir: str | Path, device: torch.device, pad_id: int) -> Any:
        if self.name == "classifier":
            return load_classifier(base_dir, self.labels, device, pad_id, self.multilabel)
        return load_causal_lm(base_dir, device)

    def collate(self, rows: Sequence[Row], pad_id: int) -> Batch:
        if self.name == "classifier":
            batch = collate([r[0] for r in rows], pad_id)
            if self.multilabel:
                batch.labels = torch.tensor([list(r[1]) for r in rows], dtype=torch.float32)
            else:
                batch.labels = torch.tensor([int(r[1]) for r in rows], dtype=torch.long)
            return batch
        return collate([r[0] for r in rows], pad_id, [r[1] for r in rows])

    def n_targets(self, rows: Sequence[Row]) -> int:
        """How many targets `loss` averages over for these rows (rows, or answer tokens)."""
        if self.name == "classifier":
            return len(rows)
        return sum(sum(1 for t in r[1][1:] if t != IGNORE_INDEX) for r in rows)

    def loss(self, model: Any, batch: Batch, train: bool = False) -> tuple[torch.Tensor, int]:
        """Mean loss of the batch and the number of targets it averaged over; `train`: the
        training objective (label smoothing on), else the plain loss (validation)."""
        if self.name == "classifier":
            assert batch.labels is not None
            logits = classifier_logits(model, batch)
            smoothing = self.label_smoothing if train else 0.0
            if self.multilabel:  # smoothing pulls each 0/1 target towards 1/2
                target = batch.labels * (1 - smoothing) + smoothing / 2
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
                return loss, len(batch.labels)
            loss = torch.nn.functional.cross_entropy(
                logits, batch.labels, label_smoothing=smoothing
            )
            return loss, len(batch.labels)
        return answer_loss(model, batch)


def head_for(recipe: Recipe) -> Head:
    return Head(
        recipe.model.head,
        tuple(recipe.labels),
        recipe.training.label_smoothing,
        recipe.task == "multilabel",
    )


def rows_for(dataset: Any, head: Head) -> list[Row]:
    """(input_ids, target) rows of a tokenized split for this head."""
    column = "label_ids" if head.multilabel else "label_id"
    targets = dataset[column] if head.name == "classifier" else dataset["labels"]
    return list(zip(dataset["input_ids"], targets, strict=True))


@torch.inference_mode()
def mean_loss(
    head: Head,
    model: Any,
    rows: Sequence[Row],
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
    batch_size: int = 32,
) -> float:
    """Target-weighted mean loss over rows (validation loss for either head)."""
    model.eval()
    total, count = 0.0, 0
    order = np.argsort([len(r[0]) for r in rows])
    for start in range(0, len(rows), batch_size):
        batch = head.collate([rows[i] for i in order[start : start + batch_size]], pad_id)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss, n = head.loss(model, batch.to(device))
        total += float(loss) * n
        count += n
    return total / max(1, count)


@torch.inference_mode()
def classifier_probs(
    model: Any,
    inputs: Sequence[Sequence[int]],
    pad_id: int,
    device: torch.device,
    dtype: torch.dtype | None = None,
    batch_size: int = 32,
    sigmoid: bool = False,
) -> np.ndarray:
    """Softmax over the labels for each tokenized input, shape (rows, labels); `sigmoid`:
    each label's own probability instead (multilabel)."""
    model.eval()
    out: list[np.ndarray] = [np.empty(0)] * len(inputs)
    order = np.argsort([len(x) for x in inputs])
    for start in range(0, len(inputs), batch_size):
        picked = order[start : start + batch_size]
        batch = collate([inputs[i] for i in picked], pad_id).to(device)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = classifier_logits(model, batch)
            probs = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=-1)
            probs = probs.cpu().numpy()
        for i, row in zip(picked, probs, strict=True):
            out[i] = row.astype(np.float64)
    return np.stack(out)
