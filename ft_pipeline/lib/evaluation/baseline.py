"""A TF-IDF + logistic regression baseline: the bar a fine-tuned LLM has to clear.

It trains in seconds on the same train split, so every evaluation can say whether the
adapter beats a bag-of-words model, not just the untuned base model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline


def train_tfidf_baseline(texts: Sequence[str], labels: Sequence[str], seed: int = 0) -> Pipeline:
    """Fit word uni+bigram TF-IDF and a class-balanced logistic regression on train rows.

    `labels` holds one label per text. Balanced class weights keep a skewed train split
    from producing a majority-class predictor, which would flatter nobody on macro-F1.
    """
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    if len(set(labels)) < 2:
        raise ValueError(f"the baseline needs at least 2 classes in training, got {set(labels)}")
    pipeline = Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)),
            (
                "clf",
                LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed),
            ),
        ]
    )
    pipeline.fit(list(texts), list(labels))
    return pipeline


def predict_with_scores(
    pipeline: Pipeline, texts: Sequence[str], labels: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """Predicted labels and probabilities with columns in `labels` order.

    `pipeline.classes_` is sorted and only holds labels seen in training, so columns are
    mapped by name: a label the baseline never saw gets probability 0, and a class it saw
    that is not in `labels` (none in a clean pipeline) keeps its mass out of the matrix.
    """
    labels = list(labels)
    probs = np.zeros((len(texts), len(labels)), dtype=np.float64)
    if len(texts) == 0:
        return [], probs
    raw = pipeline.predict_proba(list(texts))
    classes = [str(c) for c in pipeline.classes_]
    column = {c: j for j, c in enumerate(classes)}
    for i, lab in enumerate(labels):
        if lab in column:
            probs[:, i] = raw[:, column[lab]]
    preds = [classes[j] for j in raw.argmax(axis=1)]
    return preds, probs


def train_ovr_baseline(
    texts: Sequence[str], label_sets: Sequence[Sequence[str]], labels: Sequence[str], seed: int = 0
) -> Pipeline:
    """Multilabel: the same TF-IDF features and one class-balanced logistic regression per
    label (one-vs-rest) on the train rows. A label with no positive (or no negative) train
    row becomes a constant predictor, as scikit-learn does, with its warning silenced: the
    tokenized label-balance check reports such a label before any training."""
    import warnings

    from sklearn.multiclass import OneVsRestClassifier

    if len(texts) != len(label_sets):
        raise ValueError(f"{len(texts)} texts but {len(label_sets)} label sets")
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.zeros((len(texts), len(labels)), dtype=np.int64)
    for row, found in enumerate(label_sets):
        y[row, [index[lab] for lab in found if lab in index]] = 1
    clf = LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed)
    pipeline = Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)),
            ("clf", OneVsRestClassifier(clf)),
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "label not present in all examples"
        pipeline.fit(list(texts), y)
    return pipeline


def predict_ovr_scores(pipeline: Pipeline, texts: Sequence[str]) -> np.ndarray:
    """Each label's probability per text (rows x labels, in the labels' training order)."""
    if len(texts) == 0:
        return np.zeros((0, len(pipeline.named_steps["clf"].estimators_)))
    return np.asarray(pipeline.predict_proba(list(texts)), dtype=np.float64)
