"""Serving classifier-head deployment folders (encoder and decoder), in-process and via MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from ft_pipeline.lib.deployment.serving import (
    MANIFEST,
    LabelModel,
    predict_folder,
    read_manifest,
)
from ft_pipeline.lib.model import modeling
from ft_pipeline.recipe import parse_recipe
from ft_pipeline_tests.conftest import LABELS
from ft_pipeline_tests.deployment.test_serving import LONG_TEXT, SCORE_COLUMNS, TEXTS, _register

CLASSIFIER_MAX_LENGTH = 32


def _classifier_recipe(base: Path) -> dict:
    """A classification recipe dump for a classifier folder built on `base`."""
    recipe = parse_recipe(
        {
            "name": "fixture-classifier",
            "task": "classification",
            "labels": LABELS,
            "model": {"base": str(base), "max_length": CLASSIFIER_MAX_LENGTH},
        }
    )
    return recipe.model_dump(mode="json")


def build_classifier_folder(base: Path, target: Path, with_pad: bool = True) -> Path:
    """A classifier deployment folder: a sequence classifier over LABELS on a tiny base.

    `with_pad=False` saves a decoder whose tokenizer and config have no pad token, as many
    decoder checkpoints ship; serving must fall back to eos.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        pad_token_id=tokenizer.pad_token_id,
    )
    if not with_pad:
        tokenizer.pad_token = None
        model.config.pad_token_id = None
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    manifest = {"recipe": _classifier_recipe(base), "labels": LABELS, "head": "classifier"}
    (target / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return target


@pytest.fixture(scope="module", params=["encoder", "decoder", "decoder-no-pad"])
def classifier_folder(request: pytest.FixtureRequest, tmp_path_factory) -> Path:
    """Classifier deployment folders on the tiny BERT and the tiny Llama (with/without pad)."""
    base = request.getfixturevalue(
        "tiny_encoder_dir" if request.param == "encoder" else "tiny_model_dir"
    )
    target = tmp_path_factory.mktemp(f"classifier-{request.param}")
    return build_classifier_folder(base, target, with_pad=request.param != "decoder-no-pad")


def _direct_probs(folder: Path, texts: list[str]) -> np.ndarray:
    """Softmax of the classifier's logits computed by hand, the way serving must.

    Same device and autocast as serving (bf16 on CPUs that run it natively), so the two
    agree to float precision rather than to bf16 precision.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    device = modeling.pick_device("auto")
    dtype = modeling.pick_dtype("auto", device)
    model.to(device).eval()
    encoded = tokenizer(
        texts,
        truncation=True,
        max_length=CLASSIFIER_MAX_LENGTH,
        padding=True,
        return_tensors="pt",
    ).to(device)
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        logits = model(**encoded).logits
    return torch.softmax(logits.float(), dim=-1).cpu().numpy()


def test_classifier_predict_folder(classifier_folder: Path) -> None:
    texts = [*TEXTS, LONG_TEXT]
    out = predict_folder(classifier_folder, texts)
    assert list(out.columns) == ["label", *SCORE_COLUMNS]
    assert len(out) == len(texts)
    assert (out.dtypes[SCORE_COLUMNS] == np.float64).all()
    assert np.allclose(out[SCORE_COLUMNS].sum(axis=1), 1.0)
    assert (out["label"] == out[SCORE_COLUMNS].idxmax(axis=1).str.removeprefix("score_")).all()
    want = _direct_probs(classifier_folder, texts)
    assert np.allclose(out[SCORE_COLUMNS].to_numpy(), want, atol=1e-5)
    assert list(out["label"]) == [LABELS[i] for i in want.argmax(axis=1)]


def test_classifier_truncates_long_text(classifier_folder: Path) -> None:
    """A long text scores like its first max_length tokens (the classifier never sees more)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(classifier_folder)
    assert len(tokenizer(LONG_TEXT)["input_ids"]) > CLASSIFIER_MAX_LENGTH
    out = predict_folder(classifier_folder, [LONG_TEXT, LONG_TEXT + " awful rude gate"])
    assert np.allclose(out[SCORE_COLUMNS].iloc[0], out[SCORE_COLUMNS].iloc[1], atol=1e-6)


def test_classifier_batches_match_single_rows(classifier_folder: Path) -> None:
    """More rows than one batch, padded together or alone: the same probabilities."""
    texts = [f"{t} {i}" for i in range(12) for t in TEXTS]  # 36 rows: two batches
    batched = predict_folder(classifier_folder, texts)
    model = LabelModel().load_folder(classifier_folder)
    single = pd.concat([model.predict(None, [t]) for t in texts], ignore_index=True)
    assert list(batched["label"]) == list(single["label"])
    assert np.allclose(batched[SCORE_COLUMNS], single[SCORE_COLUMNS], atol=1e-6)
    assert predict_folder(classifier_folder, []).columns.tolist() == ["label", *SCORE_COLUMNS]


def test_classifier_registered_model_matches_folder(classifier_folder: Path, tracking: str) -> None:
    name = f"ft-serving-{classifier_folder.name}"
    version = _register(classifier_folder, name, 0.5)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    got = loaded.predict(pd.DataFrame({"text": [*TEXTS, LONG_TEXT]}))
    want = predict_folder(classifier_folder, [*TEXTS, LONG_TEXT])
    assert list(got.columns) == ["label", *SCORE_COLUMNS]
    assert list(got["label"]) == list(want["label"])
    assert np.allclose(got[SCORE_COLUMNS].to_numpy(), want[SCORE_COLUMNS].to_numpy(), atol=1e-6)


def _write_manifest(folder: Path, manifest: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def test_manifest_rejects_unknown_head(tmp_path: Path) -> None:
    recipe = _classifier_recipe(tmp_path)
    folder = _write_manifest(tmp_path, {"recipe": recipe, "labels": LABELS, "head": "regressor"})
    with pytest.raises(ValueError, match=r"head 'regressor' is not supported.*'classifier'"):
        read_manifest(folder)
    with pytest.raises(ValueError, match="head 'regressor' is not supported"):
        predict_folder(folder, TEXTS)


def test_manifest_classifier_needs_classification(tmp_path: Path) -> None:
    recipe = {**_classifier_recipe(tmp_path), "task": "instruction", "labels": []}
    folder = _write_manifest(tmp_path, {"recipe": recipe, "labels": [], "head": "classifier"})
    with pytest.raises(ValueError, match="head 'classifier' needs task 'classification'"):
        read_manifest(folder)


def test_classifier_labels_must_match_manifest(classifier_folder: Path, tmp_path: Path) -> None:
    import shutil

    folder = Path(shutil.copytree(classifier_folder, tmp_path / "copy"))
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    _write_manifest(folder, {**manifest, "labels": ["neutral", "negative", "positive"]})
    with pytest.raises(ValueError, match=r"id2label .* does not match the labels"):
        predict_folder(folder, TEXTS)
    _write_manifest(folder, {**manifest, "labels": ["negative", "positive"]})
    with pytest.raises(ValueError, match=r"3 outputs but .* lists 2 labels"):
        predict_folder(folder, TEXTS)
