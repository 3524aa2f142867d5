"""Reuse the reference models' outputs: the base model and TF-IDF score the same rows the same
way for every adapter trained on the same data (an experiment's variants, a retraining with
new LoRA settings), so each is computed once per key.

Each key holds everything that can change the outputs: the rows scored (their token ids),
the recipe sections that shape the prompt and the scoring, the base model's weights, the
seed and precision, the device type and the code of the scoring modules. When in doubt the
key changes and the outputs are recomputed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ft_pipeline.lib.state import atomic
from ft_pipeline.lib.state.fingerprint import code_fingerprint
from ft_pipeline.recipe import Recipe

SCORING_ENTRY = "ft_pipeline.lib.evaluation.model_scores"
BASELINE_ENTRY = "ft_pipeline.lib.evaluation.baseline"


def _sha(payload: Any) -> str:
    # No `default=str`: a value JSON cannot write fails here instead of hashing its repr.
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def rows_digest(rows: Any, columns: tuple[str, ...]) -> str:
    """A digest of every value of these columns of a datasets.Dataset (the ones present).

    `rows[c]` is a lazy `Column` in datasets 4+, whose repr shows only its first values:
    each column is read out whole (`list`), never hashed through its repr."""
    return _sha({c: list(rows[c]) for c in columns if c in rows.column_names})


def base_key(recipe: Recipe, weights: str, test: Any, val: Any, device: str) -> str:
    """What the base model's predictions and validation loss depend on."""
    sections = recipe.content_hash("task", "labels", "prompt", "model", "evaluation")
    return _sha(
        {
            "recipe": sections,
            "seed": recipe.training.seed,  # an untrained head's initialisation
            "precision": recipe.training.precision,
            "weights": weights,
            "device": device,
            "test": rows_digest(test, ("input_ids", "labels", "label", "text")),
            "val": rows_digest(val, ("input_ids", "labels", "label", "text")),
            "code": code_fingerprint([SCORING_ENTRY]),
        }
    )


def tfidf_key(recipe: Recipe, train: Any, test: Any, val: Any = None) -> str:
    """What the TF-IDF baseline's predictions depend on: its training rows and test rows,
    and the validation rows its thresholds are tuned on (`val`, multilabel)."""
    payload = {
        "labels": recipe.labels,
        "seed": recipe.training.seed,
        "train": rows_digest(train, ("text", "label")),
        "test": rows_digest(test, ("text",)),
        "code": code_fingerprint([BASELINE_ENTRY]),
    }
    if val is not None:
        payload["val"] = rows_digest(val, ("text", "label"))
    return _sha(payload)


def cached(path: Path, compute: Callable[[], Any], log: Callable[[str], None]) -> Any:
    """The JSON value saved at `path`, or `compute()` saved there."""
    if path.is_file():
        log(f"reusing {path.parent.name}/{path.name}")
        return json.loads(path.read_text())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(value))
    return value
