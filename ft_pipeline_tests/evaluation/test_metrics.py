"""Unit tests for lib.evaluation.metrics: hand-checked scores, bootstrap, text overlap."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ft_pipeline.lib.evaluation.metrics import (
    bootstrap_f1_gain,
    bootstrap_f1_interval,
    classification_metrics,
    exact_match,
    normalize_answer,
    slice_metrics,
    token_f1,
)

LABELS = ["a", "b", "c"]


def test_perfect_predictions_score_one():
    y = ["a", "b", "c", "a"]
    m = classification_metrics(y, y, LABELS)
    for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1"):
        assert m[key] == 1.0
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert m["n"] == 4
    assert m["per_label"]["a"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}


def test_all_one_class_predictions():
    m = classification_metrics(["a", "a", "b", "c"], ["a"] * 4, LABELS)
    assert m["accuracy"] == 0.5
    # a: P = 2/4, R = 1, F1 = 2/3; b and c: never predicted, zero_division=0.
    assert m["per_label"]["a"]["f1"] == pytest.approx(2 / 3)
    assert m["per_label"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["macro_precision"] == pytest.approx(0.5 / 3)
    assert m["macro_recall"] == pytest.approx(1 / 3)
    assert m["macro_f1"] == pytest.approx(2 / 9)
    assert m["confusion_matrix"] == [[2, 0, 0], [1, 0, 0], [1, 0, 0]]


def test_known_confusion_matrix():
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    m = classification_metrics(y_true, y_pred, LABELS)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P 1, R 2/3, F1 0.8; b: P 1/2, R 1/2, F1 0.5; c: P 1/2, R 1, F1 2/3.
    assert m["per_label"]["a"]["f1"] == pytest.approx(0.8)
    assert m["per_label"]["b"]["f1"] == pytest.approx(0.5)
    assert m["per_label"]["c"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert [m["per_label"][k]["support"] for k in LABELS] == [3, 2, 1]


def test_label_order_drives_matrix_and_per_label_order():
    y_true = ["a", "a", "a", "b", "b", "c"]
    y_pred = ["a", "a", "b", "b", "c", "c"]
    m = classification_metrics(y_true, y_pred, ["c", "b", "a"])
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 1, 2]]
    assert list(m["per_label"]) == ["c", "b", "a"]


def test_absent_label_counts_in_macro_and_outside_prediction_is_a_miss():
    m = classification_metrics(["a", "b"], ["a", "b"], LABELS)
    assert m["macro_f1"] == pytest.approx(2 / 3)  # c has no support, F1 0, still averaged
    assert m["per_label"]["c"]["support"] == 0
    m = classification_metrics(["a", "b"], ["a", "garbage"], ["a", "b"])
    assert m["accuracy"] == 0.5
    assert m["per_label"]["b"]["recall"] == 0.0
    assert m["confusion_matrix"] == [[1, 0], [0, 0]]


def test_length_mismatch_and_empty_raise():
    with pytest.raises(ValueError, match="length"):
        classification_metrics(["a"], ["a", "b"], LABELS)
    with pytest.raises(ValueError, match="at least one row"):
        classification_metrics([], [], LABELS)


def test_slice_metrics_per_source():
    y_true = ["a", "b", "a", "b", "c"]
    y_pred = ["a", "b", "b", "b", "a"]
    slices = ["s2", "s2", "s1", "s1", "s1"]
    out = slice_metrics(y_true, y_pred, slices, LABELS)
    assert list(out) == ["s1", "s2"]
    assert out["s2"]["n"] == 2 and out["s2"]["accuracy"] == 1.0
    assert out["s1"]["n"] == 3
    assert out["s1"]["accuracy"] == pytest.approx(1 / 3)
    assert out["s1"]["confusion_matrix"] == [[0, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_slice_metrics_accepts_series_with_a_non_range_index():
    import pandas as pd

    index = [10, 3, 7, 0, 2]
    y_true = pd.Series(["a", "b", "a", "b", "c"], index=index)
    y_pred = pd.Series(["a", "b", "b", "b", "a"], index=index)
    slices = pd.Series(["s2", "s2", "s1", "s1", "s1"], index=index)
    out = slice_metrics(y_true, y_pred, slices, LABELS)
    assert out["s2"]["accuracy"] == 1.0 and out["s1"]["n"] == 3


def _toy(n=300, seed=1):
    rng = np.random.default_rng(seed)
    y = list(rng.choice(LABELS, n))
    noisy = [t if rng.random() < 0.4 else str(rng.choice(LABELS)) for t in y]
    good = [t if rng.random() < 0.9 else str(rng.choice(LABELS)) for t in y]
    return y, noisy, good


def test_bootstrap_identical_predictions_give_zero_gain():
    y, noisy, _ = _toy()
    out = bootstrap_f1_gain(y, noisy, noisy, LABELS, samples=200)
    assert out["gain"] == 0.0
    assert out["low"] == 0.0 and out["high"] == 0.0
    assert out["samples"] == 200


def test_bootstrap_clearly_better_model_has_positive_interval():
    y, noisy, good = _toy()
    out = bootstrap_f1_gain(y, noisy, good, LABELS, samples=500)
    observed = f1_score(y, good, labels=LABELS, average="macro") - f1_score(
        y, noisy, labels=LABELS, average="macro"
    )
    assert out["gain"] == pytest.approx(observed)
    assert 0 < out["low"] <= out["gain"] <= out["high"]
    worse = bootstrap_f1_gain(y, good, noisy, LABELS, samples=500)
    assert worse["high"] < 0


def test_bootstrap_is_deterministic_for_a_seed():
    y, noisy, good = _toy()
    first = bootstrap_f1_gain(y, noisy, good, LABELS, samples=300, seed=3)
    assert bootstrap_f1_gain(y, noisy, good, LABELS, samples=300, seed=3) == first
    other = bootstrap_f1_gain(y, noisy, good, LABELS, samples=300, seed=4)
    assert other["gain"] == first["gain"]
    assert (other["low"], other["high"]) != (first["low"], first["high"])


def test_bootstrap_interval_contains_observed_and_narrows_with_confidence():
    y, noisy, good = _toy(n=200, seed=5)
    wide = bootstrap_f1_gain(y, noisy, good, LABELS, samples=400, confidence=0.99)
    narrow = bootstrap_f1_gain(y, noisy, good, LABELS, samples=400, confidence=0.5)
    for out in (wide, narrow):
        assert out["low"] <= out["gain"] <= out["high"]
    assert wide["low"] < narrow["low"] and narrow["high"] < wide["high"]


def test_bootstrap_resamples_match_sklearn_on_the_same_rows():
    # Outside-label values on both sides exercise the "miss" convention of the fast path.
    rng = np.random.default_rng(2)
    y = list(rng.choice(["a", "b", "c", "x"], 60))
    p = list(rng.choice(["a", "b", "c", "y"], 60))
    out = bootstrap_f1_interval(y, p, LABELS, samples=25, seed=9, confidence=0.9)
    assert out["f1"] == pytest.approx(classification_metrics(y, p, LABELS)["macro_f1"])
    rows = np.random.default_rng(9).integers(0, 60, size=(25, 60))
    expected = [
        f1_score(
            [y[i] for i in r], [p[i] for i in r], labels=LABELS, average="macro", zero_division=0
        )
        for r in rows
    ]
    low, high = np.quantile(expected, [0.05, 0.95])
    assert out["low"] == pytest.approx(low) and out["high"] == pytest.approx(high)


def test_bootstrap_f1_interval_perfect_and_bounds():
    y, _, good = _toy()
    assert bootstrap_f1_interval(y, y, LABELS, samples=100, seed=0, confidence=0.95) == {
        "f1": 1.0,
        "low": 1.0,
        "high": 1.0,
        "samples": 100,
        "confidence": 0.95,
    }
    out = bootstrap_f1_interval(y, good, LABELS, samples=300, seed=0, confidence=0.95)
    assert 0 < out["low"] <= out["f1"] <= out["high"] < 1


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        bootstrap_f1_gain(["a", "b"], ["a"], ["a", "b"], LABELS)
    with pytest.raises(ValueError, match="at least one row"):
        bootstrap_f1_interval([], [], LABELS)
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_f1_interval(["a"], ["a"], LABELS, confidence=1.5)


def test_normalize_answer_squad_style():
    assert normalize_answer("The  Cat, sat on a MAT!") == "cat sat on mat"
    assert normalize_answer("an apple") == "apple"
    assert normalize_answer("theory") == "theory"  # articles only as whole words


def test_exact_match():
    assert exact_match(["The Cat!", "dog"], ["cat", "a cat"]) == 0.5
    assert exact_match([], []) == 0.0
    with pytest.raises(ValueError):
        exact_match(["a"], [])


def test_token_f1():
    # pred tokens [cat, sat], ref [cat, sat, down]: P 1, R 2/3, F1 0.8.
    assert token_f1(["the cat sat"], ["a cat sat down"]) == pytest.approx(0.8)
    assert token_f1(["cat cat"], ["cat"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1(["dog", "cat"], ["cat", "cat"]) == pytest.approx(0.5)
    assert token_f1(["", "the"], ["", "x"]) == pytest.approx(0.5)  # empty==empty, empty!=x
    assert token_f1([], []) == 0.0


def test_bootstrap_mean_gain_is_paired():
    from ft_pipeline.lib.evaluation.metrics import bootstrap_mean_gain, token_f1_rows

    same = bootstrap_mean_gain([0.2, 0.5, 0.9], [0.2, 0.5, 0.9], samples=200)
    assert same["gain"] == same["low"] == same["high"] == 0.0
    # b is 0.1 better on every row: the paired interval is exactly that, however the rows vary.
    a = [0.1, 0.9, 0.4, 0.0, 0.6]
    better = bootstrap_mean_gain(a, [x + 0.1 for x in a], samples=200)
    assert better["low"] == pytest.approx(0.1) and better["high"] == pytest.approx(0.1)
    assert token_f1_rows(["bravo alpha", "x"], ["bravo alpha", "y"]) == [1.0, 0.0]
