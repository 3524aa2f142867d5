"""What the served model returns: a table with one row per input text.

Single-label models: `label` (the argmax) and one `score_<label>` probability per label.
Multilabel models: `labels` (the labels at or over their tuned threshold, as a JSON list)
and one `score_<label>` per label (each label's own sigmoid probability).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ft_pipeline.lib.model.thresholds import predict_sets

SCORE_PREFIX = "score_"


def label_frame(labels: list[str], probs: np.ndarray) -> pd.DataFrame:
    """`label` (the argmax) then one float64 `score_<label>` column per label, in order."""
    columns = [f"{SCORE_PREFIX}{label}" for label in labels]
    out = pd.DataFrame(probs.astype(np.float64), columns=columns)
    out.insert(0, "label", pd.Series([labels[i] for i in probs.argmax(axis=1)], dtype=object))
    return out


def label_set_frame(labels: list[str], probs: np.ndarray, cuts: list[float]) -> pd.DataFrame:
    """Multilabel: `labels` (a JSON list per row; a string column, which any MLflow signature
    and the REST server carry, even for an empty set) then one `score_<label>` per label."""
    sets = [json.dumps(found) for found in predict_sets(probs, cuts, labels)]
    out = pd.DataFrame(probs.astype(np.float64), columns=[f"{SCORE_PREFIX}{x}" for x in labels])
    out.insert(0, "labels", pd.Series(sets, dtype=object))
    return out
