"""What a trained adapter's folder records: adapter.json (its summary) and history.json.

adapter.json is written last, so its presence marks the adapter complete; automation reads
the latest one to decide whether enough new rows arrived to retrain.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path
from typing import Any

from ft_pipeline.lib.state.paths import StatePaths
from ft_pipeline.recipe import Recipe

INFO_FILE = "adapter.json"
HISTORY_FILE = "history.json"


def cpu_seconds() -> float:
    """CPU time (user + system, every thread) of this process and its waited-for children
    (torchrun's workers): training's cost in CPU-seconds, whatever the thread count."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def read_info(folder: Path) -> dict[str, Any] | None:
    path = folder / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def history(folder: Path) -> list[dict[str, Any]]:
    path = folder / HISTORY_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def latest_adapter(paths: StatePaths, recipe: Recipe) -> dict[str, Any] | None:
    """The most recently completed adapter of this recipe (its adapter.json), if any."""
    infos = sorted(
        paths.adapters(recipe.name).glob(f"*/{INFO_FILE}"), key=lambda p: p.stat().st_mtime
    )
    return json.loads(infos[-1].read_text()) if infos else None


def retraining_due(manifest: dict[str, Any], latest: dict[str, Any] | None, min_new_rows: int):
    """(due, new rows, reason): automation retrains only once enough new rows arrived.

    No adapter yet, or the same data version as the latest adapter (key reuse, seconds), are
    always due; otherwise the dataset must have grown by `min_new_rows` rows.
    """
    if latest is None:
        return True, manifest["rows_out"], "no adapter trained yet"
    if latest["data_version"] == manifest["data_version"]:
        return True, 0, "same data as the latest adapter: it will be reused"
    new = manifest["rows_out"] - int(latest.get("dataset_rows", 0))
    if new >= min_new_rows:
        return True, new, f"{new} new rows since the latest adapter (minimum {min_new_rows})"
    return (
        False,
        new,
        f"only {new} new rows since the latest adapter; retraining waits for {min_new_rows}",
    )
