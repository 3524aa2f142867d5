"""The classifier head end to end, on a tiny decoder (Llama) and a tiny encoder (BERT)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import load_from_disk

from ft_pipeline.lib.deployment.serving import predict_folder
from ft_pipeline.lib.state.paths import PROJECT_ROOT
from ft_pipeline_tests.conftest import LABELS, fixture_rows, write_csv, write_recipe
from ft_pipeline_tests.training.test_assets import MODEL, TRAINING, _checks, _meta, model_project

KINDS = {
    "decoder": (
        "tiny_model_dir",
        "zero-shot LM with the same prompt",
        "LlamaForSequenceClassification",
    ),
    "encoder": (
        "tiny_encoder_dir",
        "untrained classification head",
        "BertForSequenceClassification",
    ),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_classifier_head_trains_evaluates_and_deploys(kind, tmp_path, request):
    fixture, base_kind, architecture = KINDS[kind]
    base = request.getfixturevalue(fixture)
    write_csv(tmp_path / "data" / "corpus.csv", fixture_rows(40))
    recipe = write_recipe(
        tmp_path,
        base,
        ["data/corpus.csv"],
        model={"base": str(base), "max_length": 32, "head": "classifier"},
        lora={"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
        training=TRAINING,
    )
    with model_project(tmp_path, recipe) as project:
        result = project.materialize(MODEL)
        assert result.success, _checks(result)

    dataset = load_from_disk(str(project.state.paths().tokenized("fixture") / "dataset"))
    train = dataset["train"]
    assert all(labels == [] for labels in train["labels"])
    assert set(train["label_id"]) == {0, 1, 2}
    assert "<|im_start|>" not in json.dumps(train[0]["input_ids"])

    report = _meta(result, "evaluation_report")
    assert report["macro_f1_fine_tuned"] >= report["macro_f1_base"]
    saved = json.loads((Path(report["report_path"]).parent / "result.json").read_text())
    assert saved["head"] == "classifier" and saved["base_kind"] == base_kind
    assert saved["models"]["fine-tuned"]["perplexity"] is None
    assert saved["models"]["fine-tuned"]["val_loss"] < saved["models"]["base"]["val_loss"]

    folder = Path(_meta(result, "deployed_model")["model_folder"])
    manifest = json.loads((folder / "ft_pipeline.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert manifest["head"] == "classifier" and config["architectures"] == [architecture]
    assert "head `classifier`" in (folder / "README.md").read_text()
    out = predict_folder(folder, ["the flight was terrible and late", "love the friendly crew"])
    assert list(out.columns) == ["label", *[f"score_{lab}" for lab in LABELS]]
    assert out[[f"score_{lab}" for lab in LABELS]].sum(axis=1).round(6).eq(1.0).all()


def test_classifier_head_needs_a_classification_task(tmp_path, tiny_model_dir):
    from ft_pipeline.recipe import RecipeError, load_recipe

    recipe = write_recipe(
        tmp_path,
        tiny_model_dir,
        [],
        task="instruction",
        labels=[],
        label_aliases={},
        prompt={"system": None, "template": "{prompt}"},
        model={"base": str(tiny_model_dir), "head": "classifier"},
    )
    with pytest.raises(RecipeError, match=r"model\.head 'classifier' needs task 'classification'"):
        load_recipe(recipe)


def test_head_defaults_follow_the_task():
    from ft_pipeline.recipe import load_recipe, parse_recipe

    assert parse_recipe({"name": "c", "labels": ["a", "b"]}).model.head == "classifier"
    instruction = {"name": "i", "task": "instruction", "prompt": {"template": "{prompt}"}}
    assert parse_recipe(instruction).model.head == "lm"
    explicit = {"name": "c", "labels": ["a", "b"], "model": {"head": "lm"}}
    assert parse_recipe(explicit).model.head == "lm"
    root = PROJECT_ROOT / "recipes"
    assert (
        load_recipe(root / "tweet_sentiment_encoder.yaml").model.base == "bundled:all-minilm-l6-v2"
    )
