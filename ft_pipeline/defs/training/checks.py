"""Blocking checks of tokenized_dataset."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from ft_pipeline.defs.resources import RecipeResource, StateResource
from ft_pipeline.defs.training.assets import tokenized_dataset


def _spec(name: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name=f"tokenized_dataset_{name}",
        asset=tokenized_dataset,
        blocking=True,
        description=description,
    )


@dg.multi_asset_check(
    specs=[
        _spec("no_leakage", "No text appears in two splits."),
        _spec("truncation_rate", "Rows shortened or dropped for length stay under the limit."),
        _spec("answer_tokens_present", "Every training row has answer tokens to learn from."),
        _spec("label_balance", "Each label keeps its minimum share of the training split."),
    ],
    name="tokenized_dataset_quality",
)
def tokenized_dataset_quality(
    state: StateResource, recipe: RecipeResource
) -> Iterator[dg.AssetCheckResult]:
    """Leakage, truncation, answer masks and label balance of the saved splits."""
    from ft_pipeline.lib.data.splits import leaking_keys
    from ft_pipeline.lib.data.tokenized import load_tokenized, rows_without_answer_tokens

    r = recipe.load()
    dataset, manifest = load_tokenized(state.paths().tokenized(r.name))
    frames = {s: dataset[s].select_columns(["dedup_key", "split"]).to_pandas() for s in dataset}
    both = pd.concat(frames.values(), ignore_index=True)
    leaks = leaking_keys(both, both["split"])
    yield dg.AssetCheckResult(
        check_name="tokenized_dataset_no_leakage",
        passed=not leaks,
        metadata={"leaking_texts": len(leaks), "examples": leaks[:5]},
    )
    rate = float(manifest["truncation_rate"])
    yield dg.AssetCheckResult(
        check_name="tokenized_dataset_truncation_rate",
        passed=rate <= r.quality.max_truncation_rate,
        metadata={
            "truncation_rate": rate,
            "limit": r.quality.max_truncation_rate,
            "truncated_rows": manifest["truncated_rows"],
            "too_long_rows": manifest["too_long_rows"],
        },
    )
    empty = rows_without_answer_tokens(dataset["train"], r.model.head, len(r.labels))
    yield dg.AssetCheckResult(
        check_name="tokenized_dataset_answer_tokens_present",
        passed=empty == 0 and len(dataset["train"]) > 0,
        metadata={"rows_without_answer_tokens": empty, "train_rows": len(dataset["train"])},
    )
    shares = {}
    if r.task == "classification":
        train = manifest["label_distribution"].get("train", {})
        total = max(1, sum(train.values()))
        shares = {lab: train.get(lab, 0) / total for lab in r.labels}
    low = {k: v for k, v in shares.items() if v < r.quality.min_label_share}
    yield dg.AssetCheckResult(
        check_name="tokenized_dataset_label_balance",
        passed=not low,
        metadata={
            "train_label_shares": shares,
            "below_minimum": low,
            "minimum": r.quality.min_label_share,
        },
    )


@dg.asset_check(asset=tokenized_dataset, blocking=True)
def tokenized_dataset_enough_new_rows(
    state: StateResource, recipe: RecipeResource
) -> dg.AssetCheckResult:
    """Automation retrains only after `automation.min_new_rows` new rows (a tiny file does not
    start a training). A WARN, not an error: manual runs and the schedule still train."""
    from ft_pipeline.lib.data.tokenized import load_tokenized
    from ft_pipeline.lib.training.adapter_info import latest_adapter, retraining_due

    r = recipe.load()
    paths = state.paths()
    _, manifest = load_tokenized(paths.tokenized(r.name))
    due, new, reason = retraining_due(manifest, latest_adapter(paths, r), r.automation.min_new_rows)
    return dg.AssetCheckResult(
        passed=due,
        severity=dg.AssetCheckSeverity.WARN,
        description=reason,
        metadata={"new_rows": new, "min_new_rows": r.automation.min_new_rows},
    )
