"""tokenized_dataset_label_balance under task multilabel: each label's share of the training
rows holding it, and every label in at least one training row."""

from __future__ import annotations

from ft_pipeline.defs.explained import FIELDS
from ft_pipeline.defs.training.checks import _balance
from ft_pipeline.recipe import parse_recipe
from ft_pipeline_tests.emotions import EMOTIONS


def _manifest(train: dict[str, int], rows: int = 100) -> dict:
    return {"label_distribution": {"train": train}, "split_sizes": {"train": rows}}


def _meta(result) -> dict:
    return {k: getattr(v, "value", v) for k, v in result.metadata.items()}


def test_shares_are_of_training_rows_and_overlap_is_allowed():
    r = parse_recipe({"name": "e", "task": "multilabel", "labels": EMOTIONS})
    # 60 + 50 + 30 + 20 positives over 100 rows: sets overlap, shares need not sum to 1.
    ok = _balance(r, _manifest({"anger": 60, "joy": 50, "sadness": 30, "fear": 20}), "ui")
    assert ok.passed
    shares = {"anger": 0.6, "joy": 0.5, "sadness": 0.3, "fear": 0.2}
    assert _meta(ok)["train_label_shares"] == shares


def test_a_label_no_training_row_holds_fails_even_without_a_minimum_share():
    r = parse_recipe(
        {"name": "e", "task": "multilabel", "labels": EMOTIONS, "quality": {"min_label_share": 0}}
    )
    failed = _balance(r, _manifest({"anger": 60, "joy": 50, "sadness": 30}), "ui")
    assert not failed.passed
    meta = _meta(failed)
    assert all(meta.get(k) for k in FIELDS)
    assert "fear 0.0%" in meta["measured"] and "rows holding each label" in meta["measured"]
    assert "at least one training row" in meta["limit"]
    assert meta["below_minimum"] == {"fear": 0.0}
