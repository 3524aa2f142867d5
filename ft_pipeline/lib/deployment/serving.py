"""Serving: a deployment folder as an MLflow pyfunc model that returns label probabilities.

A deployment folder holds a merged model (`save_pretrained` output), its tokenizer and
`ft_pipeline.json` (`{"recipe": ..., "labels": [...], "head": "lm" | "classifier"}`).
`LabelModel` wraps it so `mlflow models serve` and `mlflow.pyfunc.load_model` score texts
exactly like evaluation does, with the same output for both heads (`label` plus one
`score_<label>` probability per label):

- `lm`: a causal LM; the text goes through the recipe's chat template and the labels are
  scored from one forward pass (no generated text is parsed). Instruction/chat recipes
  answer with a `response` column instead.
- `classifier`: an `AutoModelForSequenceClassification` (decoder or encoder); the raw text is
  tokenized with the model's own special tokens (no chat template, as in training) and the
  classification logits are softmaxed over the labels. Under `task: multilabel` each
  label gets its own sigmoid, and the output is `labels` (a JSON list of the labels at or
  over their tuned threshold, from the manifest's `thresholds`) and one `score_<label>`.

`predict_folder` runs the same code path in-process, without MLflow, so a registered model
can be checked against the folder it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch

from ft_pipeline.lib.data.rendering import encode_prompts
from ft_pipeline.lib.data.truncation import encode_texts
from ft_pipeline.lib.deployment.outputs import SCORE_PREFIX, label_frame, label_set_frame  # noqa: F401
from ft_pipeline.lib.model import heads, modeling, scoring
from ft_pipeline.recipe import Recipe, parse_recipe
from ft_pipeline.recipe_labels import LABEL_TASKS

MANIFEST = "ft_pipeline.json"
ARTIFACT_KEY = "model"
HEADS = ("lm", "classifier")
CLASSIFIER_BATCH_SIZE = 32
# What the model needs at load time besides ft_pipeline itself (which must be importable
# where the model is served: the pickled LabelModel refers to this module by name).
RUNTIME_PACKAGES = (
    "mlflow",
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "pandas",
    "numpy",
    "pydantic",
    "pyyaml",
)


@dataclass
class _Loaded:
    """Everything prediction needs, loaded once per process."""

    model: Any
    tokenizer: Any
    recipe: Recipe
    labels: list[str]
    head: str
    tokens: scoring.LabelTokens | None  # lm head, classification recipes only
    device: torch.device
    dtype: torch.dtype | None
    pad_id: int
    thresholds: list[float] | None = None  # multilabel: each label's cut


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The folder's `ft_pipeline.json`, checked: a recipe, labels and a supported head."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder}: not a deployment folder, {MANIFEST} is missing")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in ("recipe", "labels") if k not in manifest]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    head = manifest.get("head", "lm")
    if head not in HEADS:
        raise ValueError(f"{path}: head {head!r} is not supported; supported heads: {HEADS}")
    task = manifest["recipe"].get("task", "classification")
    if head == "classifier" and task not in LABEL_TASKS:
        raise ValueError(
            f"{path}: head 'classifier' needs task 'classification' or 'multilabel', got {task!r}"
        )
    if task in LABEL_TASKS and len(manifest["labels"]) < 2:
        raise ValueError(f"{path}: needs at least two labels, got {manifest['labels']}")
    if task == "multilabel" and len(manifest.get("thresholds") or []) != len(manifest["labels"]):
        raise ValueError(f"{path}: a multilabel model needs one threshold per label")
    return manifest


def _load_classifier(folder: Path, labels: list[str], device: torch.device) -> Any:
    """A float32 sequence classifier from the folder, checked against the manifest's labels.

    The manifest's labels name the logits' columns, so a head of another size, or one whose
    `id2label` names the labels in another order, would silently mislabel every row.
    """
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=torch.float32)
    n_labels = int(model.config.num_labels)
    if n_labels != len(labels):
        raise ValueError(
            f"{folder}: the classifier has {n_labels} outputs but {MANIFEST} lists "
            f"{len(labels)} labels {labels}"
        )
    names = [str(model.config.id2label[i]) for i in range(n_labels)]
    if names != labels and names != [f"LABEL_{i}" for i in range(n_labels)]:
        raise ValueError(
            f"{folder}: the classifier's id2label {names} does not match the labels "
            f"{labels} in {MANIFEST}"
        )
    return model.to(device)


def _ensure_pad(tokenizer: Any, model: Any) -> int:
    """The pad id, set on both tokenizer and model config where missing (eos as pad).

    Decoder tokenizers often have no pad token, and a decoder classifier finds each row's
    last real token through `config.pad_token_id`, so both must agree on one.
    """
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return int(tokenizer.pad_token_id)


def _label_tokens(
    tokenizer: Any, recipe: Recipe, head: str, labels: list[str]
) -> scoring.LabelTokens | None:
    """Label tokens for lm-head classification; None where labels are not scored as tokens."""
    if head != "lm" or recipe.task != "classification":
        return None
    return scoring.label_tokens(tokenizer, labels)


def _load_folder(folder: str | Path, device_preference: str = "auto") -> _Loaded:
    """Load tokenizer, model (for the manifest's head), recipe and label tokens."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    manifest = read_manifest(folder)
    recipe = parse_recipe(manifest["recipe"], origin=str(folder / MANIFEST))
    labels = [str(label) for label in manifest["labels"]]
    head = manifest.get("head", "lm")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    device = modeling.pick_device(device_preference)
    if head == "classifier":
        model = _load_classifier(folder, labels, device)
    else:
        model = modeling.load_causal_lm(folder, device)
    model.eval()
    pad_id = _ensure_pad(tokenizer, model)
    return _Loaded(
        model=model,
        tokenizer=tokenizer,
        recipe=recipe,
        labels=labels,
        head=head,
        tokens=_label_tokens(tokenizer, recipe, head, labels),
        device=device,
        dtype=modeling.pick_dtype("auto", device),
        pad_id=pad_id,
        thresholds=manifest.get("thresholds") if recipe.task == "multilabel" else None,
    )


def input_texts(model_input: Any) -> list[str]:
    """The texts of a pyfunc input: a DataFrame with a `text` column, a list, or a dict.

    Every text must be a string; the error names the first row that is not.
    """
    if isinstance(model_input, pd.DataFrame):
        if "text" not in model_input.columns:
            raise ValueError(f"input has no 'text' column; got columns {list(model_input.columns)}")
        values, names = list(model_input["text"]), list(model_input.index)
    elif isinstance(model_input, Mapping):
        if "text" not in model_input:
            raise ValueError(f"input has no 'text' key; got keys {sorted(model_input)}")
        text = model_input["text"]
        values = [text] if isinstance(text, str) else list(text)
        names = list(range(len(values)))
    elif isinstance(model_input, pd.Series | Sequence) and not isinstance(model_input, str):
        values = list(model_input)
        names = list(range(len(values)))
    else:
        raise ValueError(
            "input must be a DataFrame with a 'text' column, a list of strings or "
            f"a dict with 'text'; got {type(model_input).__name__}"
        )
    for position, (name, value) in enumerate(zip(names, values, strict=True)):
        if not isinstance(value, str):
            where = f"row {position}" + (f" (index {name!r})" if name != position else "")
            raise ValueError(
                f"{where}: 'text' must be a string, got {type(value).__name__} {value!r}"
            )
    return values


def _generate(loaded: _Loaded, texts: list[str]) -> pd.DataFrame:
    """Instruction/chat models answer with text: one `response` per input."""
    prompts = encode_prompts(texts, loaded.recipe, loaded.tokenizer)
    ev = loaded.recipe.evaluation
    answers = scoring.generate_answers(
        loaded.model, loaded.tokenizer, prompts, loaded.device, ev.max_new_tokens
    )
    return pd.DataFrame({"response": pd.Series(answers, dtype=object)})


def _lm_probs(loaded: _Loaded, texts: list[str]) -> np.ndarray:
    """lm head: label probabilities from the chat-templated prompt, one forward pass."""
    assert loaded.tokens is not None  # lm head + classification: set in _load_folder
    prompts = encode_prompts(texts, loaded.recipe, loaded.tokenizer)
    return scoring.score_labels(
        loaded.model, prompts, loaded.tokens, loaded.pad_id, loaded.device, dtype=loaded.dtype
    )


def _classifier_probs(loaded: _Loaded, texts: list[str]) -> np.ndarray:
    """classifier head: softmax of the logits over the labels, from the raw texts.

    No chat template: the text is tokenized with the model's own special tokens and cut to
    `max_length` by `model.truncation`, exactly as `rendering.encode_plain` did for training.
    """
    ids, _ = encode_texts(texts, loaded.recipe, loaded.tokenizer)
    sigmoid, batch = loaded.thresholds is not None, CLASSIFIER_BATCH_SIZE
    return heads.classifier_probs(
        loaded.model, ids, loaded.pad_id, loaded.device, loaded.dtype, batch, sigmoid
    )


def _predict(loaded: _Loaded, texts: list[str]) -> pd.DataFrame:
    """Label probabilities for texts: `label` (argmax) and one `score_<label>` per label."""
    if loaded.head == "lm" and loaded.tokens is None:
        return _generate(loaded, texts)
    if loaded.thresholds is not None:
        probs = _classifier_probs(loaded, texts) if texts else np.zeros((0, len(loaded.labels)))
        return label_set_frame(loaded.labels, probs, loaded.thresholds)
    if not texts:
        return label_frame(loaded.labels, np.zeros((0, len(loaded.labels))))
    if loaded.head == "classifier":
        return label_frame(loaded.labels, _classifier_probs(loaded, texts))
    return label_frame(loaded.labels, _lm_probs(loaded, texts))


class LabelModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc model over a deployment folder (artifact key `model`).

    Input: a DataFrame with a `text` column (or a list of strings, or `{"text": [...]}`).
    Output: a DataFrame with `label` and one probability column `score_<label>` per label.
    """

    def __init__(self) -> None:
        self._loaded: _Loaded | None = None

    def load_folder(self, folder: str | Path) -> LabelModel:
        """Load the deployment folder directly (what `load_context` does under MLflow)."""
        self._loaded = _load_folder(folder)
        return self

    def load_context(self, context: Any) -> None:
        """Load tokenizer, model and recipe from the logged deployment folder."""
        self.load_folder(context.artifacts[ARTIFACT_KEY])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Score every text; see the class docstring for the input and output shapes."""
        if self._loaded is None:
            raise RuntimeError("LabelModel is not loaded; call load_folder or load_context")
        return _predict(self._loaded, input_texts(model_input))


def predict_folder(folder: str | Path, texts: Sequence[str]) -> pd.DataFrame:
    """Predict straight from a deployment folder, in-process (same path as `LabelModel`)."""
    return LabelModel().load_folder(folder).predict(None, list(texts))
