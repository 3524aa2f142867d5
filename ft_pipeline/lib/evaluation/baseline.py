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
