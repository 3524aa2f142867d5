"""task multilabel end to end through Dagster on a tiny random Llama and generated emotion
rows (no human-labelled multi-label corpus is bundled): raw_data -> deployed_model, then the
registered pyfunc, loaded by MLflow, returns each text's label set and per-label scores."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
import pytest
import yaml

from ft_pipeline.lib.data.tokenized import load_tokenized
from ft_pipeline.lib.deployment import registry
from ft_pipeline.lib.deployment.job import fluent_tracking_uri
from ft_pipeline.lib.evaluation import job as evaluation_job
from ft_pipeline.lib.model.thresholds import THRESHOLDS_FILE
from ft_pipeline_tests.conftest import write_csv, write_recipe
from ft_pipeline_tests.emotions import EMOTIONS, build_emotion_model, emotion_rows
from ft_pipeline_tests.training.test_assets import KEY, LORA, _meta, model_project

ALL = dg.AssetSelection.assets(
    "raw_data",
    "cleaned_data",
    "tokenized_dataset",
    "fine_tuned_adapter",
    "evaluation_report",
    "deployed_model",
)
TRAINING = {
    "learning_rate": 0.003,
    "head_learning_rate": 0.01,
    "batch_size": 16,
    "max_steps": 100,
    "eval_every": 20,
    "checkpoint_every": 100,
    "early_stopping_patience": None,
    "warmup_ratio": 0.0,
    "lr_scheduler": "constant",
}


def _corpus(tmp_path: Path) -> None:
    """Generated rows: half with a JSON label list, half with `;`-separated labels, one
    unknown label (quarantined) and one row that repeats another's text."""
    rows = emotion_rows(360, seed=5)
    records = [
        {"text": r["text"], "emotions": json.dumps(r["labels"]) if i % 2 else ";".join(r["labels"])}
        for i, r in enumerate(rows)
    ]
    records += [{"text": "r5-x a puzzled letter", "emotions": "anger;puzzled"}, records[0]]
    write_csv(tmp_path / "data" / "corpus.csv", records)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    tiny_model_dir = build_emotion_model(tmp_path_factory.mktemp("emotion-llama"))
    root = tmp_path_factory.mktemp("multilabel")
    _corpus(root)
    recipe = write_recipe(
        root,
        tiny_model_dir,
        ["data/corpus.csv"],
        name="emotions",
        task="multilabel",
        labels=EMOTIONS,
        multilabel={"separator": ";"},
        data={"columns": {"text": "text", "label": "emotions", "confidence": None}},
        prompt={"system": None, "template": "{text}"},
        model={"base": str(tiny_model_dir), "max_length": 48, "head": "classifier"},
        training=TRAINING,
        lora=LORA,
        evaluation={"bootstrap_samples": 300},
    )
    settings = yaml.safe_load(recipe.read_text())
    recipe.write_text(yaml.safe_dump({**settings, "label_aliases": {"angry": "anger"}}))
    with model_project(root, recipe, prepare=False) as project:
        project.instance.add_dynamic_partitions("source_files", [KEY])
        data = project.materialize(dg.AssetSelection.assets("raw_data", "cleaned_data"), KEY)
        failed = [e.check_name for e in data.get_asset_check_evaluations() if not e.passed]
        errors = [e.event_specific_data.error.message for e in data.all_events if e.is_failure]
        assert data.success, (failed, errors)
        result = project.materialize(ALL - dg.AssetSelection.assets("raw_data", "cleaned_data"))
        yield project, data, result


def test_every_step_succeeds_and_the_adapter_learns_the_labels(deployed):
    project, data, result = deployed
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    checks |= {e.check_name: e.passed for e in data.get_asset_check_evaluations()}
    assert result.success, checks
    assert all(checks.values()), checks
    cleaned = _meta(data, "cleaned_data")
    assert cleaned["rows_quarantined"] == 2  # the unknown label and the repeated text
    quarantine = pd.read_parquet(project.state.paths().quarantine(KEY))
    reasons = dict(zip(quarantine["reason_code"], quarantine["reason"], strict=True))
    assert (
        "'puzzled'" in reasons["unknown_label"] and "column 'emotions'" in reasons["unknown_label"]
    )

    adapter = _meta(result, "fine_tuned_adapter")
    assert adapter["best_val_loss"] < adapter["initial_val_loss"]
    folder = project.state.paths().adapters("emotions") / adapter["adapter_key"] / "adapter"
    saved = json.loads((folder / THRESHOLDS_FILE).read_text())
    assert saved["labels"] == EMOTIONS and len(saved["thresholds"]) == 4

    report = _meta(result, "evaluation_report")
    path = Path(report["report_path"])
    outcome = json.loads(path.with_name("result.json").read_text())
    models = outcome["models"]
    print("\nmultilabel end-to-end (test rows:", outcome["test_rows"], ")")
    for name, m in models.items():
        print(f"  {name:10s} macro-F1 {m['macro_f1']:.3f} micro-F1 {m['micro_f1']:.3f}")
    interval = outcome["interval"]
    print(f"  fine-tuned macro CI {interval['low']:.3f}..{interval['high']:.3f}")
    print(f"  thresholds {outcome['thresholds']}")
    assert report["macro_f1_fine_tuned"] > report["macro_f1_base"] + 0.2
    assert models["fine-tuned"]["macro_f1"] > 0.6
    assert models["tfidf"]["macro_f1"] > 0.6  # the one-vs-rest baseline reads the cues too
    assert outcome["gate"]["metric"] == "macro_f1" and outcome["gate"]["passed"]
    text = path.read_text()
    assert "micro-F1" in text and "TF-IDF F1" in text and "## Per label" in text


def test_the_registered_pyfunc_returns_label_sets_and_per_label_scores(deployed):
    project, _, result = deployed
    deployed_meta = _meta(result, "deployed_model")
    champion = registry.champion(project.client, "ft-emotions")
    assert champion is not None and str(champion.version) == deployed_meta["version"]
    manifest = json.loads((Path(deployed_meta["model_folder"]) / "ft_pipeline.json").read_text())
    assert len(manifest["thresholds"]) == 4
    report = Path(_meta(result, "evaluation_report")["report_path"])
    outcome = json.loads(report.with_name("result.json").read_text())
    dataset, _ = load_tokenized(project.state.paths().tokenized("emotions"))
    test = dataset["test"].select(evaluation_job.test_indices(dataset, project.recipe.load()))
    texts = ["furious the letter terrified today", "the train today news", *test["text"]]
    with fluent_tracking_uri(project.mlflow.uri(project.state)):
        model = mlflow.pyfunc.load_model(f"models:/ft-emotions@{registry.CHAMPION}")
    out = model.predict(pd.DataFrame({"text": texts}))
    assert list(out.columns) == ["labels", *[f"score_{e}" for e in EMOTIONS]]
    sets = [json.loads(v) for v in out["labels"]]
    print("  served:", dict(zip(texts[:2], sets[:2], strict=True)))
    for found, (_, row) in zip(sets, out.iterrows(), strict=True):
        over = [
            e
            for e, t in zip(EMOTIONS, manifest["thresholds"], strict=True)
            if row[f"score_{e}"] >= t
        ]
        assert found == over
        assert all(0.0 <= row[f"score_{e}"] <= 1.0 for e in EMOTIONS)
    assert sets[0] == ["anger", "fear"] and sets[1] == []
    # The served model cuts the test rows exactly where evaluation did.
    assert sets[2:] == outcome["predictions"]["fine-tuned"]


def test_cli_predict_prints_the_champions_label_set(deployed, monkeypatch, capsys):
    from ft_pipeline import cli

    project, _, _ = deployed
    for var in ("FT_HOME", "FT_RECIPE", "DAGSTER_HOME"):
        monkeypatch.setenv(var, "unused")
    args = ["--home", project.state.root, "--recipe", project.recipe.path]
    assert cli.main([*args, "predict", "furious the letter terrified today"]) == 0
    answer, scores, text = capsys.readouterr().out.strip().split("\t")
    assert json.loads(answer) == ["anger", "fear"] and text.endswith("terrified today")
    assert [s.split()[0] for s in scores.strip("()").split(", ")] == EMOTIONS
