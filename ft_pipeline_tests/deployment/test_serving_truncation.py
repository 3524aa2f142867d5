"""A served classifier cuts a long text by the recipe's `model.truncation`, exactly as
training's `encode_plain` did: an adapter trained on head+tail inputs is served on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ft_pipeline.lib.data.rendering import encode_plain
from ft_pipeline.lib.deployment.serving import MANIFEST, LabelModel
from ft_pipeline.lib.model import heads
from ft_pipeline.recipe import parse_recipe
from ft_pipeline_tests.deployment.test_serving import LONG_TEXT, SCORE_COLUMNS
from ft_pipeline_tests.deployment.test_serving_classifier import (
    CLASSIFIER_MAX_LENGTH,
    build_classifier_folder,
)

LONG = f"awful late start {LONG_TEXT} thanks amazing end"


@pytest.fixture(scope="module")
def head_tail_folder(tiny_encoder_dir, tmp_path_factory) -> Path:
    """A classifier folder on the tiny BERT whose recipe says `truncation: head_tail`."""
    folder = build_classifier_folder(tiny_encoder_dir, tmp_path_factory.mktemp("head-tail"))
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["recipe"]["model"]["truncation"] = "head_tail"
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def _served_ids(served: LabelModel, texts: list[str]) -> tuple[list[list[int]], np.ndarray]:
    """(the unpadded token ids the served model was given, its scores) for these texts."""
    model, seen = served._loaded.model, []

    def record(_module, _args, kwargs):
        batch = zip(kwargs["input_ids"].tolist(), kwargs["attention_mask"].tolist(), strict=True)
        for ids, mask in batch:
            seen.append([t for t, m in zip(ids, mask, strict=True) if m])

    hook = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        scores = served.predict(None, texts)[SCORE_COLUMNS].to_numpy()
    finally:
        hook.remove()
    return seen, scores


def test_serving_gives_the_model_the_ids_training_encoded(head_tail_folder: Path) -> None:
    served = LabelModel().load_folder(head_tail_folder)
    tokenizer, recipe = served._loaded.tokenizer, served._loaded.recipe
    assert recipe == parse_recipe(json.loads((head_tail_folder / MANIFEST).read_text())["recipe"])
    texts = [LONG, "awful late and rude gate"]
    trained = encode_plain(pd.DataFrame({"text": texts}), recipe, tokenizer).rows
    assert list(trained["truncated"]) == [True, False]
    assert trained["n_tokens"][0] == CLASSIFIER_MAX_LENGTH
    assert tokenizer.decode(trained["input_ids"][0]).endswith("thanks amazing end [SEP]")

    seen, scores = _served_ids(served, texts)
    assert sorted(seen) == sorted(list(ids) for ids in trained["input_ids"])
    head_ids = tokenizer([LONG], truncation=True, max_length=CLASSIFIER_MAX_LENGTH)["input_ids"]
    assert head_ids[0] not in seen  # the head-only cut is not what the model was given
    loaded = served._loaded
    want = heads.classifier_probs(
        loaded.model, list(trained["input_ids"]), loaded.pad_id, loaded.device, loaded.dtype
    )
    assert np.allclose(scores, want, atol=1e-6)
