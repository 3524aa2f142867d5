"""Build, save and describe the tokenized train/validation/test dataset."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from datasets import Dataset, DatasetDict, load_from_disk

from ft_pipeline.lib.data.label_sets import label_set, multi_hot, rarest_label
from ft_pipeline.lib.data.partition_cache import POS, PartitionCache
from ft_pipeline.lib.data.partition_store import read_signatures
from ft_pipeline.lib.data.readers import ROW_COLUMN
from ft_pipeline.lib.data.rendering import IGNORE_INDEX, encode_plain, encode_rows
from ft_pipeline.lib.data.splits import (
    SPLITS,
    assign_splits,
    join_partitions,
    leaking_keys,
    split_digest,
    split_ledger,
)
from ft_pipeline.lib.state.atomic import staged_dir
from ft_pipeline.lib.state.gcpause import paused_gc
from ft_pipeline.lib.state.paths import StatePaths
from ft_pipeline.recipe import Recipe

DATASET_DIR = "dataset"
DROPPED_FILE = "dropped.parquet"
MANIFEST_FILE = "manifest.json"
LEDGER_FILE = "split_ledger.parquet"  # dedup key -> split of every key split so far
LENGTH_REASONS = ("too_long_for_max_length",)
PERCENTILES = (50, 90, 95, 99)


@dataclass
class TokenizedResult:
    """The DatasetDict, every row that did not make it (with reason), and summary stats."""

    dataset: DatasetDict
    dropped: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)
    ledger: pd.Series | None = None  # dedup key -> split, for the next build (`split_ledger`)


def fingerprint(parts: dict[str, str], recipe: Recipe, splits: str = "") -> str:
    """Data version of the tokenized dataset: clean partition versions, recipe, and the
    digest of each row's split (which also depends on the earlier builds' ledger)."""
    payload = {"parts": parts, "recipe": recipe.tokenization_hash(), "splits": splits}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def split_config(recipe: Recipe) -> dict[str, Any]:
    """What the split of a row depends on, besides its key: an earlier ledger made with
    other settings does not apply."""
    # classification: True (as before multilabel existed, so earlier ledgers still apply)
    stratify = {"classification": True, "multilabel": "rarest_label"}.get(recipe.task, False)
    return {**recipe.split.model_dump(), "stratify": stratify}


def earlier_ledger(target: Path, recipe: Recipe) -> pd.Series | None:
    """The split ledger of the dataset saved at `target`, if made with today's settings."""
    manifest, ledger = target / MANIFEST_FILE, target / LEDGER_FILE
    if not (manifest.is_file() and ledger.is_file()):
        return None
    if json.loads(manifest.read_text()).get("split_config") != split_config(recipe):
        return None
    frame = pd.read_parquet(ledger)
    return pd.Series(frame["split"].to_numpy(), index=frame["dedup_key"].to_numpy(), dtype=object)


def build_tokenized(
    frames: dict[str, pd.DataFrame],
    recipe: Recipe,
    tokenizer: Any,
    versions: dict[str, str] | None = None,
    cache: PartitionCache | None = None,
    pinned: pd.Series | None = None,
) -> TokenizedResult:
    """Join, dedup across partitions, split, render and tokenize.

    With `versions` (each partition's data version) and a `cache`, each partition's
    signatures and encoded rows are reused from earlier builds. `pinned` is the earlier
    builds' split ledger: the keys it holds keep their split (`assign_splits`).
    """
    with paused_gc():
        return _build(frames, recipe, tokenizer, versions, cache, pinned)


def _build(frames, recipe, tokenizer, versions, cache, pinned) -> TokenizedResult:
    cache = cache if versions is not None and cache is not None else PartitionCache(None)
    versions = versions or {}
    keys = [k for k in sorted(frames) if len(frames[k])]
    threshold = recipe.cleaning.near_duplicate_threshold
    sigs = None
    if threshold is not None and threshold < 1.0:
        sigs = {k: cache.signatures(k, versions.get(k, ""), frames[k]) for k in keys}
    joined = join_partitions(frames, threshold, sigs)

    plain = recipe.model.head == "classifier"
    encode = partial(encode_plain if plain else encode_rows, recipe=recipe, tokenizer=tokenizer)
    encoded = [cache.encoded(k, versions.get(k, ""), frames[k], encode) for k in keys]
    survivors = pd.MultiIndex.from_frame(joined.rows[["source", ROW_COLUMN]])

    def kept(frame: pd.DataFrame) -> pd.DataFrame:
        where = pd.MultiIndex.from_frame(frame[["source", ROW_COLUMN]]).isin(survivors)
        return frame[where].drop(columns=[POS])

    rows = pd.concat([kept(e.rows) for e in encoded], ignore_index=True)
    too_long = pd.concat([kept(e.dropped) for e in encoded], ignore_index=True)
    strata = {"classification": "label", "multilabel": "stratum"}.get(recipe.task)
    if recipe.task == "multilabel":
        sets = [label_set(v) for v in rows["label"]]
        rows["label_ids"] = [list(v) for v in multi_hot(sets, recipe.labels).astype("float32")]
        rows["stratum"] = rarest_label(sets)  # docs/recipes.md: "Multi-label: emotions"
    split, stratified = assign_splits(
        rows, recipe.split.validation, recipe.split.test, recipe.split.seed, strata, pinned
    )
    rows["split"] = split
    ledger = split_ledger(rows["dedup_key"], split, pinned)
    if recipe.task == "classification":
        rows["label_id"] = rows["label"].map(recipe.labels.index).astype("int64")
    rows = rows.drop(columns=["messages"] if recipe.task != "chat" else [])
    rows = rows.drop(columns=["stratum"], errors="ignore")
    dataset = DatasetDict(
        {
            s: Dataset.from_pandas(
                rows[rows["split"] == s].reset_index(drop=True), preserve_index=False
            )
            for s in SPLITS
        }
    )
    dropped = pd.concat([joined.dropped, too_long], ignore_index=True)
    n_too_long = int(dropped["reason_code"].isin(LENGTH_REASONS).sum())
    stats = {
        "rows_in": sum(len(f) for f in frames.values()),
        "rows_out": len(rows),
        "rows_dropped": len(dropped),
        "cross_partition_duplicates": len(joined.dropped),
        "stratified": stratified,
        "truncated_rows": int(rows["truncated"].sum()),
        "too_long_rows": n_too_long,
        "truncation_rate": (int(rows["truncated"].sum()) + n_too_long) / max(1, len(joined.rows)),
        "token_length_percentiles": length_percentiles(
            pd.concat([rows["n_tokens_full"], too_long["n_tokens_full"]]), recipe.model.max_length
        ),
        "leaking_keys": len(leaking_keys(rows, rows["split"])),
        "pinned_rows": int(rows["dedup_key"].isin(pinned.index).sum()) if pinned is not None else 0,
        "split_digest": split_digest(ledger, rows["dedup_key"]),
        "partition_cache": {"hits": cache.hits, "misses": cache.misses},
    }
    if stats["rows_in"] != stats["rows_out"] + stats["rows_dropped"]:
        raise AssertionError(f"tokenized row accounting broken: {stats}")
    return TokenizedResult(dataset, dropped, stats, ledger)


def length_percentiles(lengths: pd.Series | list[int], max_length: int) -> dict[str, int]:
    """p50, p90, p95, p99 and max of the rows' token lengths before any shortening, beside
    `max_length`: how far the inputs are from fitting. A percentile is a length that share
    of the rows is at or under (nearest rank), so `max_length: p95` cuts about 5% of rows."""
    values = np.asarray(pd.Series(lengths, dtype="float64").dropna(), dtype=np.int64)
    if not len(values):
        return {**{f"p{q}": 0 for q in PERCENTILES}, "max": 0, "max_length": max_length}
    pct = {f"p{q}": int(np.percentile(values, q, method="inverted_cdf")) for q in PERCENTILES}
    return {**pct, "max": int(values.max()), "max_length": max_length}


def tokenize_partitions(
    paths: StatePaths,
    recipe: Recipe,
    frames: dict[str, pd.DataFrame],
    versions: dict[str, str],
    excluded: dict[str, str],
    tokenizer: Any,
) -> tuple[TokenizedResult, dict[str, Any]]:
    """Build the recipe's tokenized dataset from the gated partitions and save it.

    Uses (and prunes) the recipe's partition cache; returns the result and the manifest
    saved beside it (data version, partitions joined and left out, stats, split summary).
    """
    cache = PartitionCache(
        paths.partition_cache(recipe.dataset_name),
        recipe.tokenization_hash(),
        saved=lambda key, version, rows: read_signatures(paths, key, version, rows),
    )
    pinned = earlier_ledger(paths.tokenized(recipe.dataset_name), recipe)
    result = build_tokenized(frames, recipe, tokenizer, versions, cache, pinned)
    cache.prune()
    manifest = {
        "data_version": fingerprint(versions, recipe, result.stats["split_digest"]),
        "split_config": split_config(recipe),
        "recipe": recipe.name,
        "recipe_hash": recipe.content_hash(),
        "base_model": recipe.model.base,
        "partitions": versions,
        "excluded": excluded,
        **result.stats,
        **split_summary(result.dataset, recipe.task),
    }
    save_tokenized(result, paths.tokenized(recipe.dataset_name), manifest)
    return result, manifest


def column(dataset: Dataset, name: str) -> np.ndarray:
    """One column of a dataset as a numpy array (through Arrow: no per-row decoding)."""
    values = dataset.with_format("arrow")[name]
    if pa.types.is_list(values.type):
        return np.array(values.to_pylist(), dtype=object)
    return values.to_numpy(zero_copy_only=False)


def split_summary(dataset: DatasetDict, task: str) -> dict[str, Any]:
    """Split sizes, label distribution per split and token length percentiles."""
    sizes = {s: len(dataset[s]) for s in dataset}
    lengths = np.concatenate([column(dataset[s], "n_tokens") for s in dataset if len(dataset[s])])
    pct = {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 99)}
    pct["max"] = int(lengths.max())
    labels = {}
    if task == "multilabel":
        for s in dataset:
            found = pd.Series([lab for v in column(dataset[s], "label") for lab in label_set(v)])
            labels[s] = {k: int(v) for k, v in found.value_counts().sort_index().items()}
    elif task == "classification":
        for s in dataset:
            counts = pd.Series(column(dataset[s], "label")).value_counts().sort_index()
            labels[s] = {k: int(v) for k, v in counts.items()}
    return {"split_sizes": sizes, "token_length": pct, "label_distribution": labels}


def rows_without_answer_tokens(dataset: Dataset, head: str = "lm", n_labels: int = 0) -> int:
    """Training rows with nothing to learn from: all labels masked (lm head), or a label id
    outside the label set (classifier head)."""
    if head == "classifier" and "label_ids" in dataset.column_names:  # multilabel
        return sum(len(ids) != n_labels for ids in column(dataset, "label_ids"))
    if head == "classifier":
        ids = column(dataset, "label_id")
        return int(((ids < 0) | (ids >= n_labels)).sum())
    return sum(all(t == IGNORE_INDEX for t in labels) for labels in column(dataset, "labels"))


def save_tokenized(result: TokenizedResult, target: Path, manifest: dict[str, Any]) -> None:
    """Write dataset, dropped rows and manifest to a temp folder, then swap it in.

    A full or read-only disk raises `StateWriteError` naming the folder and the cause; the
    previous dataset stays in place, whole (see `ft_pipeline.lib.state.atomic`)."""
    import datasets

    datasets.disable_progress_bars()
    with staged_dir(target, label="tokenized") as tmp:
        result.dataset.save_to_disk(str(tmp / DATASET_DIR))
        result.dropped.to_parquet(tmp / DROPPED_FILE, index=False)
        if result.ledger is not None:
            ledger = pd.DataFrame({"dedup_key": result.ledger.index, "split": result.ledger})
            ledger.to_parquet(tmp / LEDGER_FILE, index=False)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))


def load_tokenized(target: Path) -> tuple[DatasetDict, dict[str, Any]]:
    """The saved DatasetDict and its manifest."""
    if not (target / MANIFEST_FILE).is_file():
        raise FileNotFoundError(
            f"{target}: no tokenized dataset; materialize tokenized_dataset first"
        )
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    return load_from_disk(str(target / DATASET_DIR)), manifest
