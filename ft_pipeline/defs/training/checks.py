"""Blocking checks of tokenized_dataset."""

from collections.abc import Iterator

import dagster as dg
import pandas as pd

from ft_pipeline.defs.explained import explained
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
    look = "tokenized_dataset's metadata in the UI (make ui)"
    yield explained(
        "tokenized_dataset_no_leakage",
        not leaks,
        measured=f"{len(leaks)} texts in more than one split (e.g. {leaks[:3]})",
        limit="0",
        fix="a bug in splitting, not in your data: report it with the keys above",
        look=look,
        metadata={"leaking_texts": len(leaks), "examples": leaks[:5]},
    )
    yield _truncation(r, manifest, look)
    empty = rows_without_answer_tokens(dataset["train"], r.model.head, len(r.labels))
    n_train = len(dataset["train"])
    yield explained(
        "tokenized_dataset_answer_tokens_present",
        empty == 0 and n_train > 0,
        measured=f"{empty} of {n_train} training rows have no answer token to learn from",
        limit="0 such rows, and at least one training row",
        fix="raise model.max_length so the answer fits after the prompt, or shorten "
        "prompt.template / prompt.system; with no training rows, add data",
        look=look,
        metadata={"rows_without_answer_tokens": empty, "train_rows": n_train},
    )
    yield _balance(r, manifest, look)


def _position_limit(base: str) -> int | None:
    """The base model's longest input, if its config says (a fix never suggests more)."""
    from ft_pipeline.lib.model.base_models import max_positions

    try:
        return max_positions(base)
    except Exception:  # an unreadable or absent config only loses the cap
        return None


def _truncation(r, manifest: dict, look: str) -> dg.AssetCheckResult:
    """Shortened or dropped rows against the limit, with the input lengths before shortening
    (`token_length_percentiles`) so the fix can name a max_length that fits most rows."""
    rate, limit = float(manifest["truncation_rate"]), r.quality.max_truncation_rate
    cut, dropped = manifest["truncated_rows"], manifest["too_long_rows"]
    max_length, how = r.model.max_length, r.model.truncation
    pct = manifest.get("token_length_percentiles") or {}  # absent in an older manifest
    spread = ", ".join(f"{k} {pct[k]}" for k in ("p50", "p90", "p99", "max") if k in pct)
    measured = (
        f"{rate:.1%} of rows shortened ({cut}) or dropped as too long ({dropped}) "
        f"at model.max_length {max_length}, model.truncation {how}"
    )
    if spread:
        measured += f"; tokens per row before shortening {spread} vs max_length {max_length}"
    over = [(k, pct[k]) for k in ("p95", "p99", "max") if pct.get(k, 0) > max_length]
    cap = _position_limit(r.model.base) or 32768
    if over and cap > max_length:
        value = min(over[0][1], cap)
        why = f"the rows' {over[0][0]}" + (
            f", capped at the base model's {cap} positions" if value == cap else ""
        )
        raise_to = f"raise model.max_length to about {value} ({why}; "
    else:
        raise_to = "raise model.max_length ("
    tail = (
        "model.truncation is head_tail already: a long input keeps its first quarter and "
        "last three quarters"
        if how == "head_tail"
        else "set model.truncation: head_tail to keep a long input's first quarter and "
        "last three quarters instead of its start only"
    )
    return explained(
        "tokenized_dataset_truncation_rate",
        rate <= limit,
        measured=measured,
        limit=f"quality.max_truncation_rate {limit}",
        fix=f"{raise_to}longer inputs, slower training); {tail} (a shortened row counts "
        "either way); lower cleaning.max_chars to quarantine the longest texts; or raise "
        "quality.max_truncation_rate to accept cut texts",
        look=look,
        metadata={
            "truncation_rate": rate,
            "truncated_rows": cut,
            "too_long_rows": dropped,
            "max_length": max_length,
            "truncation": how,
            "token_length_percentiles": pct,
        },
    )


def _balance(r, manifest: dict, look: str) -> dg.AssetCheckResult:
    """Each label's share of the training split (multilabel: of the training rows holding
    it, and at least one such row: a label never seen in training cannot be learnt)."""
    shares, multi = {}, r.task == "multilabel"
    if r.task in ("classification", "multilabel"):
        train = manifest["label_distribution"].get("train", {})
        total = manifest["split_sizes"]["train"] if multi else sum(train.values())
        shares = {lab: train.get(lab, 0) / max(1, total) for lab in r.labels}
    minimum = r.quality.min_label_share
    low = {k: v for k, v in shares.items() if v < minimum or (multi and v == 0)}
    what = "rows holding each label, of" if multi else "label shares of"
    return explained(
        "tokenized_dataset_label_balance",
        not low,
        measured=f"{what} the joined training split: "
        + (", ".join(f"{k} {v:.1%}" for k, v in shares.items()) or "not a classification task"),
        limit=f"quality.min_label_share {minimum} of the training split, for every label"
        + ("; and every label in at least one training row" if multi else ""),
        fix="add rows of those labels (any source file), merge or drop the rare label in "
        "`labels` / `label_aliases`, or lower quality.min_label_share",
        look=look,
        metadata={"train_label_shares": shares, "below_minimum": low, "minimum": minimum},
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
    return explained(
        "tokenized_dataset_enough_new_rows",
        due,
        measured=reason,
        limit=f"automation.min_new_rows {r.automation.min_new_rows} new rows since the last "
        "adapter (automation only; a manual run or the schedule trains anyway)",
        fix="wait for more data, lower automation.min_new_rows, or materialize "
        "fine_tuned_adapter by hand",
        look="the landing folder and tokenized_dataset's metadata",
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"new_rows": new, "min_new_rows": r.automation.min_new_rows},
    )
