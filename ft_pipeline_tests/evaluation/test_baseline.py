"""Unit tests for ft_pipeline.lib.evaluation.baseline: TF-IDF + logistic regression baseline."""

import numpy as np
import pytest

from ft_pipeline.lib.evaluation.baseline import predict_with_scores, train_tfidf_baseline

TEXTS = [
    "awful broken delayed flight",
    "terrible rude staff worst",
    "hate this awful delay",
    "great friendly crew love",
    "amazing smooth flight thanks",
    "best happy trip love it",
    "gate schedule update today",
    "ticket seat check today",
    "flight schedule gate check",
]
Y = ["negative"] * 3 + ["positive"] * 3 + ["neutral"] * 3


def test_learns_separable_toy_task():
    pipeline = train_tfidf_baseline(TEXTS, Y, seed=0)
    preds, probs = predict_with_scores(pipeline, TEXTS, ["negative", "neutral", "positive"])
    assert preds == Y
    assert np.mean(np.array(preds) == np.array(Y)) == 1.0
    assert probs.shape == (len(TEXTS), 3)
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_probability_columns_follow_given_label_order():
    pipeline = train_tfidf_baseline(TEXTS, Y)
    labels = ["positive", "negative", "neutral"]  # not the sorted classes_ order
    assert list(pipeline.classes_) != labels
    preds, probs = predict_with_scores(pipeline, TEXTS, labels)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert [labels[j] for j in probs.argmax(axis=1)] == preds == Y
    raw = pipeline.predict_proba(TEXTS)
    sorted_cols = list(pipeline.classes_)
    for j, lab in enumerate(labels):
        assert np.allclose(probs[:, j], raw[:, sorted_cols.index(lab)])


def test_label_unseen_in_training_gets_zero_probability():
    texts, y = TEXTS[:6], Y[:6]  # no neutral rows
    pipeline = train_tfidf_baseline(texts, y)
    labels = ["neutral", "negative", "positive"]
    preds, probs = predict_with_scores(pipeline, ["awful rude delay", "love the crew"], labels)
    assert preds == ["negative", "positive"]
    assert probs[:, 0].tolist() == [0.0, 0.0]
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_empty_input_and_bad_training_data():
    pipeline = train_tfidf_baseline(TEXTS, Y)
    preds, probs = predict_with_scores(pipeline, [], ["negative", "neutral", "positive"])
    assert preds == [] and probs.shape == (0, 3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        train_tfidf_baseline(TEXTS[:3], Y[:3])
    with pytest.raises(ValueError, match="labels"):
        train_tfidf_baseline(TEXTS, Y[:-1])


def test_the_cache_keys_see_every_row_not_only_the_first_few():
    """datasets' lazy Column shows only its first values in its repr; a digest of that repr
    would reuse TF-IDF outputs trained on other rows (found on the shipped experiment)."""
    from datasets import Dataset

    from ft_pipeline.lib.evaluation.baseline_cache import rows_digest, tfidf_key
    from ft_pipeline.recipe import parse_recipe

    recipe = parse_recipe({"name": "k", "labels": ["a", "b"], "prompt": {"template": "{text}"}})
    texts = [f"row {i}" for i in range(50)]
    rows = Dataset.from_dict({"text": texts, "label": ["a", "b"] * 25})
    edited = Dataset.from_dict(
        {"text": [*texts[:40], "changed", *texts[41:]], "label": ["a", "b"] * 25}
    )
    assert rows_digest(rows, ("text",)) != rows_digest(edited, ("text",))
    assert tfidf_key(recipe, rows, rows) != tfidf_key(recipe, rows.select(range(45)), rows)
    assert tfidf_key(recipe, rows, rows) == tfidf_key(recipe, rows.select(range(50)), rows)
