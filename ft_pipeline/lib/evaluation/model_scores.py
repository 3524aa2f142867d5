"""Score the base and the fine-tuned model on the test rows, for either head.

Returns, per model, the predicted labels (classification) or answers (instruction/chat),
plus the validation loss. For the classifier head the validation loss of every model is
the cross-entropy of the true label, so base and fine-tuned losses compare directly.
Multilabel (sigmoid head): each model predicts the labels whose probability reaches their
threshold (the adapter's tuned ones; 0.5 for the base model's untrained head, which is all a
base model can offer here: label-token scoring picks one label), and the validation loss is
the binary cross-entropy of the multi-hot targets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from ft_pipeline.lib.data.rendering import encode_prompts
from ft_pipeline.lib.model.heads import (
    classifier_probs,
    head_for,
    load_classifier,
    mean_loss,
    rows_for,
)
from ft_pipeline.lib.model.modeling import load_causal_lm
from ft_pipeline.lib.model.scoring import generate_answers, label_tokens, prompt_ids, score_labels
from ft_pipeline.lib.model.thresholds import DEFAULT, predict_sets, read_thresholds
from ft_pipeline.recipe import Recipe

Progress = Callable[[str], Callable[[int, int], None]]
BASE, TUNED = "base", "fine-tuned"
ZERO_SHOT, UNTRAINED = "zero-shot LM with the same prompt", "untrained classification head"


def base_kind(base_dir: str | Path, tokenizer: Any) -> str:
    """How the base model is scored under a classifier recipe: a decoder with a chat
    template can answer zero-shot; an encoder only has an untrained head (chance level)."""
    config = json.loads((Path(base_dir) / "config.json").read_text())
    causal = any(a.endswith("ForCausalLM") for a in config.get("architectures") or [])
    return ZERO_SHOT if causal and tokenizer.chat_template else UNTRAINED


def _label_ce(probs: np.ndarray, gold: list[str], labels: list[str]) -> float:
    index = [labels.index(g) for g in gold]
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(index)), index], 1e-12, 1.0))))


def score_lm_head(model, recipe: Recipe, tokenizer, test: Dataset, val: Dataset, ctx: dict):
    """(predictions, val loss) of a causal LM under the `lm` head's prompts."""
    head = head_for(recipe)
    loss = mean_loss(head, model, rows_for(val, head), ctx["pad"], ctx["device"], ctx["dtype"])
    prompts = [prompt_ids(i, lab) for i, lab in zip(test["input_ids"], test["labels"], strict=True)]
    if recipe.task != "classification":
        n = min(len(test), recipe.evaluation.max_generation_rows)
        answers = generate_answers(
            model, tokenizer, prompts[:n], ctx["device"], recipe.evaluation.max_new_tokens
        )
        return answers, loss
    probs = _label_probs(model, recipe, tokenizer, prompts, ctx)
    return [recipe.labels[i] for i in probs.argmax(axis=1)], loss


def _label_probs(model, recipe: Recipe, tokenizer, prompts, ctx: dict) -> np.ndarray:
    tokens = label_tokens(tokenizer, recipe.labels)
    return score_labels(
        model, prompts, tokens, ctx["pad"], ctx["device"], ctx["dtype"], progress=ctx["progress"]
    )


def score_zero_shot(model, recipe: Recipe, tokenizer, texts: list[str], ctx: dict) -> np.ndarray:
    """Label probabilities of a causal LM prompted with the recipe's template."""
    return _label_probs(model, recipe, tokenizer, encode_prompts(texts, recipe, tokenizer), ctx)


def score_base(
    base_dir: str | Path, recipe: Recipe, tokenizer: Any, test: Dataset, val: Dataset, ctx: dict
) -> tuple[list[str], float, str]:
    """The base model's predictions, validation loss and kind (ZERO_SHOT or UNTRAINED)."""
    labels, device, pad = recipe.labels, ctx["device"], ctx["pad"]
    if recipe.model.head == "lm":
        model = load_causal_lm(base_dir, device)
        outputs, loss = score_lm_head(model, recipe, tokenizer, test, val, ctx)
        return outputs, loss, ZERO_SHOT
    kind = UNTRAINED if recipe.task == "multilabel" else base_kind(base_dir, tokenizer)
    if kind == ZERO_SHOT:
        lm = load_causal_lm(base_dir, device)
        probs = score_zero_shot(lm, recipe, tokenizer, test["text"], ctx)
        val_probs = score_zero_shot(lm, recipe, tokenizer, val["text"], ctx)
        loss = _label_ce(val_probs, val["label"], labels)
        return [labels[i] for i in probs.argmax(axis=1)], loss, kind
    torch.manual_seed(recipe.training.seed)
    head = head_for(recipe)
    untrained = load_classifier(base_dir, labels, device, pad, head.multilabel)
    return (*_classify(untrained, recipe, test, val, ctx), kind)


def _classify(model, recipe: Recipe, test: Dataset, val: Dataset, ctx: dict, thresholds=None):
    """(predicted labels, validation loss) of a classification-head model; multilabel:
    (predicted label lists, loss), cut at `thresholds` (default 0.5 for every label)."""
    pad, device, dtype = ctx["pad"], ctx["device"], ctx["dtype"]
    head = head_for(recipe)
    probs = classifier_probs(model, test["input_ids"], pad, device, dtype, sigmoid=head.multilabel)
    loss = mean_loss(head, model, rows_for(val, head), pad, device, dtype)
    if head.multilabel:
        cut = thresholds or [DEFAULT] * len(recipe.labels)
        return predict_sets(probs, cut, recipe.labels), loss
    return [recipe.labels[i] for i in probs.argmax(axis=1)], loss


def score_tuned(
    base_dir: str | Path,
    adapter_dir: Path,
    recipe: Recipe,
    tokenizer: Any,
    test: Dataset,
    val: Dataset,
    ctx: dict[str, Any],
) -> tuple[list[str], float]:
    """The fine-tuned model's predictions (labels or answers) and validation loss."""
    from peft import PeftModel

    labels, device, pad = recipe.labels, ctx["device"], ctx["pad"]
    if recipe.model.head == "lm":
        model = PeftModel.from_pretrained(load_causal_lm(base_dir, device), str(adapter_dir))
        return score_lm_head(model, recipe, tokenizer, test, val, ctx)
    torch.manual_seed(recipe.training.seed)
    head = head_for(recipe)
    model = PeftModel.from_pretrained(
        load_classifier(base_dir, labels, device, pad, head.multilabel), str(adapter_dir)
    )
    thresholds = read_thresholds(adapter_dir, labels) if head.multilabel else None
    return _classify(model, recipe, test, val, ctx, thresholds)


def evaluate_models(
    base_dir: str | Path,
    adapter_dir: Path,
    recipe: Recipe,
    tokenizer: Any,
    test: Dataset,
    val: Dataset,
    ctx: dict[str, Any],
    base: tuple[list[str], float, str] | None = None,
) -> tuple[dict[str, list[str]], dict[str, float], str]:
    """Predictions and validation losses of base and fine-tuned models, and the base kind;
    `base`: the base model's (predictions, loss, kind) when already known."""
    outputs, loss, kind = base or score_base(base_dir, recipe, tokenizer, test, val, ctx)
    tuned = score_tuned(base_dir, adapter_dir, recipe, tokenizer, test, val, ctx)
    return {BASE: list(outputs), TUNED: tuned[0]}, {BASE: loss, TUNED: tuned[1]}, kind
