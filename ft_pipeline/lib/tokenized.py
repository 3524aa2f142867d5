"""Build, save and describe the tokenized train/validation/test dataset."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset, DatasetDict, load_from_disk

from ft_pipeline.lib.rendering import IGNORE_INDEX, encode_plain, encode_rows
from ft_pipeline.lib.splits import SPLITS, assign_splits, join_partitions, leaking_keys
from ft_pipeline.recipe import Recipe

DATASET_DIR = "dataset"
DROPPED_FILE = "dropped.parquet"
MANIFEST_FILE = "manifest.json"
LENGTH_REASONS = ("too_long_for_max_length",)


@dataclass
class TokenizedResult:
    """The DatasetDict, every row that did not make it (with reason), and summary stats."""

    dataset: DatasetDict
    dropped: pd.DataFrame
    stats: dict[str, Any] = field(default_factory=dict)


def fingerprint(parts: dict[str, str], recipe: Recipe) -> str:
    """Data version of the tokenized dataset: clean partition versions + recipe."""
    payload = json.dumps({"parts": parts, "recipe": recipe.tokenization_hash()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_tokenized(
    frames: dict[str, pd.DataFrame], recipe: Recipe, tokenizer: Any
) -> TokenizedResult:
    """Join, dedup across partitions, split, render and tokenize."""
    joined = join_partitions(frames, recipe.cleaning.near_duplicate_threshold)
    stratify = "label" if recipe.task == "classification" else None
    split, stratified = assign_splits(
        joined.rows, recipe.split.validation, recipe.split.test, recipe.split.seed, stratify
    )
    encode = encode_plain if recipe.model.head == "classifier" else encode_rows
    encoded = encode(joined.rows.assign(split=split), recipe, tokenizer)
    rows = encoded.rows
    if recipe.task == "classification":
        rows["label_id"] = rows["label"].map(recipe.labels.index).astype("int64")
    rows = rows.drop(columns=["messages"] if recipe.task != "chat" else [])
    dataset = DatasetDict(
        {
            s: Dataset.from_pandas(
                rows[rows["split"] == s].reset_index(drop=True), preserve_index=False
            )
            for s in SPLITS
        }
    )
    dropped = pd.concat([joined.dropped, encoded.dropped], ignore_index=True)
    rows_in = sum(len(f) for f in frames.values())
    too_long = int(dropped["reason_code"].isin(LENGTH_REASONS).sum())
    stats = {
        "rows_in": rows_in,
        "rows_out": len(rows),
        "rows_dropped": len(dropped),
        "cross_partition_duplicates": len(joined.dropped),
        "stratified": stratified,
        "truncated_rows": int(rows["truncated"].sum()),
        "too_long_rows": too_long,
        "truncation_rate": (int(rows["truncated"].sum()) + too_long) / max(1, len(joined.rows)),
        "leaking_keys": len(leaking_keys(rows, rows["split"])),
    }
    if stats["rows_in"] != stats["rows_out"] + stats["rows_dropped"]:
        raise AssertionError(f"tokenized row accounting broken: {stats}")
    return TokenizedResult(dataset, dropped, stats)


def split_summary(dataset: DatasetDict, task: str) -> dict[str, Any]:
    """Split sizes, label distribution per split and token length percentiles."""
    sizes = {s: len(dataset[s]) for s in dataset}
    lengths = np.concatenate(
        [np.asarray(dataset[s]["n_tokens"]) for s in dataset if len(dataset[s])]
    )
    pct = {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 99)}
    pct["max"] = int(lengths.max())
    labels = {}
    if task == "classification":
        for s in dataset:
            counts = pd.Series(dataset[s]["label"]).value_counts().sort_index()
            labels[s] = {k: int(v) for k, v in counts.items()}
    return {"split_sizes": sizes, "token_length": pct, "label_distribution": labels}


def rows_without_answer_tokens(dataset: Dataset, head: str = "lm", n_labels: int = 0) -> int:
    """Training rows with nothing to learn from: all labels masked (lm head), or a label id
    outside the label set (classifier head)."""
    if head == "classifier":
        return sum(not 0 <= i < n_labels for i in dataset["label_id"])
    return sum(all(t == IGNORE_INDEX for t in labels) for labels in dataset["labels"])


def save_tokenized(result: TokenizedResult, target: Path, manifest: dict[str, Any]) -> None:
    """Write dataset, dropped rows and manifest to a temp folder, then swap it in."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    import datasets

    datasets.disable_progress_bars()
    result.dataset.save_to_disk(str(tmp / DATASET_DIR))
    result.dropped.to_parquet(tmp / DROPPED_FILE, index=False)
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, default=str))
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def load_tokenized(target: Path) -> tuple[DatasetDict, dict[str, Any]]:
    """The saved DatasetDict and its manifest."""
    if not (target / MANIFEST_FILE).is_file():
        raise FileNotFoundError(
            f"{target}: no tokenized dataset; materialize tokenized_dataset first"
        )
    manifest = json.loads((target / MANIFEST_FILE).read_text())
    return load_from_disk(str(target / DATASET_DIR)), manifest
