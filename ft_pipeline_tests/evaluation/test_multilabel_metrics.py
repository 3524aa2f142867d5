"""Multilabel metrics against scikit-learn by hand, the paired bootstrap, the one-vs-rest
TF-IDF baseline and the report's multilabel sections."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ft_pipeline.lib.evaluation.baseline import predict_ovr_scores, train_ovr_baseline
from ft_pipeline.lib.evaluation.multilabel_metrics import (
    bootstrap_multilabel_gain,
    bootstrap_multilabel_intervals,
    multilabel_metrics,
)
from ft_pipeline.lib.evaluation.promotion import gate, paired_gain, primary_metric
from ft_pipeline.lib.evaluation.report import render_report
from ft_pipeline.lib.model.thresholds import predict_sets, tune_thresholds
from ft_pipeline.recipe import parse_recipe
from ft_pipeline_tests.emotions import EMOTIONS, emotion_rows

LABELS = ["a", "b", "c"]
TRUE = [["a"], ["a", "b"], [], ["c"], ["b", "c"]]
PRED = [["a"], ["a"], ["b"], ["c"], ["c"]]


def test_metrics_match_a_hand_count_and_sklearn():
    m = multilabel_metrics(TRUE, PRED, LABELS)
    # a: tp 2 fp 0 fn 0 -> 1; b: tp 0 fp 1 fn 2 -> 0; c: tp 2 fp 0 fn 0 -> 1
    assert m["per_label"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert m["per_label"]["b"]["f1"] == 0.0 and m["per_label"]["b"]["support"] == 2
    assert m["macro_f1"] == pytest.approx(2 / 3)
    # micro: tp 4, fp 1, fn 2 -> 8 / 11
    assert m["micro_f1"] == pytest.approx(8 / 11)
    assert m["accuracy"] == pytest.approx(2 / 5)  # rows 1 and 4: the whole set right
    t = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1], [0, 1, 1]])
    p = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]])
    assert m["macro_f1"] == pytest.approx(f1_score(t, p, average="macro"))
    assert m["micro_f1"] == pytest.approx(f1_score(t, p, average="micro"))
    assert m["labels_per_row"] == pytest.approx(1.0)


def test_bootstrap_is_paired_and_brackets_the_observed_values():
    refs = TRUE * 20
    good, bad = PRED * 20, [["a"]] * 100
    gain = bootstrap_multilabel_gain(refs, bad, good, LABELS, samples=300, seed=1)
    observed = (
        multilabel_metrics(refs, good, LABELS)["macro_f1"]
        - multilabel_metrics(refs, bad, LABELS)["macro_f1"]
    )
    assert gain["gain"] == pytest.approx(observed)
    assert 0 < gain["low"] <= observed <= gain["high"]
    same = bootstrap_multilabel_gain(refs, good, good, LABELS, samples=50)
    assert same["low"] == same["high"] == 0.0  # paired: identical models never differ
    found = bootstrap_multilabel_intervals(refs, good, LABELS, samples=300, seed=1)
    assert found["low"] <= found["f1"] <= found["high"]
    assert found["micro"]["low"] <= 8 / 11 <= found["micro"]["high"]
    assert found["per_label"]["a"] == {"f1": 1.0, "low": 1.0, "high": 1.0}
    with pytest.raises(ValueError, match="equally long"):
        bootstrap_multilabel_gain(refs, good[:-1], good, LABELS)


def test_thresholds_maximise_each_labels_f1_and_default_without_positives():
    probs = np.array([[0.30, 0.9, 0.2], [0.35, 0.8, 0.1], [0.1, 0.2, 0.6], [0.05, 0.7, 0.3]])
    truth = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    cuts = tune_thresholds(probs, truth)
    # a: anything in (0.1, 0.3] separates the positives; the tie goes to the cut nearest 0.5
    assert cuts[0] == 0.3
    assert cuts[1] == 0.5  # 0.7, 0.8, 0.9 are positives and 0.2 is not: 0.5 already perfect
    assert cuts[2] == 0.5  # no positive in validation: the default
    assert predict_sets(probs, cuts, LABELS) == [["a", "b"], ["a", "b"], ["c"], ["b"]]
    with pytest.raises(ValueError, match="differ in shape"):
        tune_thresholds(probs, truth[:, :2])


def test_one_vs_rest_baseline_learns_the_cue_words():
    train, test = emotion_rows(300, seed=1), emotion_rows(100, seed=2)
    pipeline = train_ovr_baseline(
        [r["text"] for r in train], [r["labels"] for r in train], EMOTIONS, seed=0
    )
    probs = predict_ovr_scores(pipeline, [r["text"] for r in test])
    assert probs.shape == (100, 4)
    preds = predict_sets(probs, [0.5] * 4, EMOTIONS)
    m = multilabel_metrics([r["labels"] for r in test], preds, EMOTIONS)
    assert m["macro_f1"] > 0.8, m


def _result(recipe):
    refs = TRUE * 10
    tuned, base = PRED * 10, [[]] * 50
    models = {
        "base": multilabel_metrics(refs, base, LABELS),
        "fine-tuned": multilabel_metrics(refs, tuned, LABELS),
        "tfidf": multilabel_metrics(refs, [["a"]] * 50, LABELS),
    }
    return {
        "recipe": "emo",
        "task": "multilabel",
        "labels": LABELS,
        "models": models,
        "references": refs,
        "predictions": {"base": base, "fine-tuned": tuned},
        "gain": paired_gain(recipe, refs, base, tuned),
        "interval": bootstrap_multilabel_intervals(refs, tuned, LABELS, samples=200),
        "thresholds": {"a": 0.35, "b": 0.5, "c": 0.6},
    }


def test_the_gate_reads_macro_f1_and_the_report_shows_micro_macro_and_per_label():
    recipe = parse_recipe({"name": "emo", "task": "multilabel", "labels": LABELS})
    assert primary_metric(recipe) == "macro_f1"
    result = _result(recipe)
    result["gate"] = gate(result, recipe, None)
    assert result["gate"]["passed"], result["gate"]
    text = render_report(result)
    assert "micro F1" in text and "subset accuracy" in text
    assert "Fine-tuned macro-F1 0.667 (" in text and "micro-F1 0.727 (" in text
    assert "## Per label" in text and "| a " in text and "0.35" in text
    assert "Confusion" not in text


def test_a_multilabel_champion_is_compared_on_the_same_rows():
    from ft_pipeline.lib.evaluation.promotion import CHAMPION, attach_champion

    recipe = parse_recipe({"name": "emo", "task": "multilabel", "labels": LABELS})
    result = _result(recipe)
    attach_champion(result, recipe, "3", [["a"]] * 50)  # what the served champion answered
    assert result["models"][CHAMPION]["macro_f1"] == result["models"]["tfidf"]["macro_f1"]
    assert result["champion_gain"]["gain"] > 0 and result["champion_version"] == "3"
