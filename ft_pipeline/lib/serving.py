"""Serving: a deployment folder as an MLflow pyfunc model that returns label probabilities.

A deployment folder holds a merged causal LM (`save_pretrained` output), its tokenizer and
`ft_pipeline.json` (`{"recipe": ..., "labels": [...], "head": "lm"}`). `LabelModel` wraps it
so `mlflow models serve` and `mlflow.pyfunc.load_model` score texts exactly like evaluation
does: same chat template, one forward pass, probabilities over the labels (no generated text
is parsed). `predict_folder` runs the same code path in-process, without MLflow, so a
registered model can be checked against the folder it came from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import infer_signature

from ft_pipeline.lib import modeling, scoring
from ft_pipeline.lib.registry import METRIC_TAG_PREFIX
from ft_pipeline.lib.rendering import encode_prompts
from ft_pipeline.recipe import Recipe, parse_recipe

MANIFEST = "ft_pipeline.json"
ARTIFACT_KEY = "model"
SCORE_PREFIX = "score_"
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
    tokens: scoring.LabelTokens | None
    device: torch.device
    dtype: torch.dtype | None
    pad_id: int


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
    if head != "lm":
        raise ValueError(f"{path}: head {head!r} is not supported, only 'lm'")
    task = manifest["recipe"].get("task", "classification")
    if task == "classification" and len(manifest["labels"]) < 2:
        raise ValueError(f"{path}: needs at least two labels, got {manifest['labels']}")
    return manifest


def _load_folder(folder: str | Path, device_preference: str = "auto") -> _Loaded:
    """Load tokenizer, model, recipe and label tokens from a deployment folder."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    manifest = read_manifest(folder)
    recipe = parse_recipe(manifest["recipe"], origin=str(folder / MANIFEST))
    labels = [str(label) for label in manifest["labels"]]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    device = modeling.pick_device(device_preference)
    model = modeling.load_causal_lm(folder, device)
    model.eval()
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id
    return _Loaded(
        model=model,
        tokenizer=tokenizer,
        recipe=recipe,
        labels=labels,
        tokens=scoring.label_tokens(tokenizer, labels) if recipe.task == "classification" else None,
        device=device,
        dtype=modeling.pick_dtype("auto", device),
        pad_id=int(pad_id),
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


def _predict(loaded: _Loaded, texts: list[str]) -> pd.DataFrame:
    """Label probabilities for texts: `label` (argmax) and one `score_<label>` per label."""
    if loaded.tokens is None:
        return _generate(loaded, texts)
    columns = [f"{SCORE_PREFIX}{label}" for label in loaded.labels]
    if not texts:
        empty = {"label": pd.Series([], dtype=object)}
        empty.update({c: pd.Series([], dtype="float64") for c in columns})
        return pd.DataFrame(empty)
    prompts = encode_prompts(texts, loaded.recipe, loaded.tokenizer)
    probs = scoring.score_labels(
        loaded.model,
        prompts,
        loaded.tokens,  # classification: set in _load_folder
        loaded.pad_id,
        loaded.device,
        dtype=loaded.dtype,
    )
    out = pd.DataFrame(probs, columns=columns)
    out.insert(0, "label", [loaded.labels[i] for i in probs.argmax(axis=1)])
    return out


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


def runtime_requirements() -> list[str]:
    """Pinned pip requirements of the serving runtime (ft_pipeline itself excluded)."""
    pins = []
    for name in RUNTIME_PACKAGES:
        try:
            # Drop a local version label (torch 2.13.0+cpu): the pin must resolve on PyPI.
            pins.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def log_and_register(
    folder: str | Path,
    registered_name: str,
    run_tags: Mapping[str, Any],
    metrics: Mapping[str, float],
    input_example_texts: Sequence[str],
) -> ModelVersion:
    """Log a deployment folder as a pyfunc model and register it as a new version.

    Runs inside the active MLflow run (or a new one). The version is tagged with the metrics
    (`ft_pipeline.metric.<name>`) so a later promotion gate can compare against the champion
    without going back to the run. Returns the new ModelVersion (tags included).
    """
    folder = Path(folder)
    texts = list(input_example_texts)
    if not texts:
        raise ValueError("input_example_texts must hold at least one text")
    example = pd.DataFrame({"text": pd.Series(texts, dtype=object)})
    signature = infer_signature(example, predict_folder(folder, texts))
    run = mlflow.active_run()
    with nullcontext(run) if run is not None else mlflow.start_run():
        if run_tags:
            mlflow.set_tags({k: str(v) for k, v in run_tags.items()})
        info = mlflow.pyfunc.log_model(
            name=ARTIFACT_KEY,
            python_model=LabelModel(),
            artifacts={ARTIFACT_KEY: str(folder)},
            signature=signature,
            input_example=example,
            registered_model_name=registered_name,
            pip_requirements=runtime_requirements(),
        )
    if info.registered_model_version is None:
        raise RuntimeError(f"MLflow did not register a version of {registered_name!r}")
    version_id = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in metrics.items():
        client.set_model_version_tag(
            registered_name, version_id, f"{METRIC_TAG_PREFIX}{key}", repr(float(value))
        )
    return client.get_model_version(registered_name, version_id)
