"""Per-partition files: raw/clean/quarantine Parquet plus small JSON sidecars.

The sidecars record how a raw file was read (so cleaning uses the same column mapping) and
whether a clean partition passed its quality gate (so the join only takes trusted data).

The files of one partition are written together (`atomic.write_files`): all are staged
before any is replaced, so a full or read-only disk fails the write with a clear error and
leaves the previous version of every file as it was. A clean partition's stats sidecar (its
data version) is replaced first: until the quality checks have run on the new rows, the old
gate no longer matches and the join leaves the partition out.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ft_pipeline.lib.data.sources import Source
from ft_pipeline.lib.state import atomic
from ft_pipeline.lib.state.paths import StatePaths


def _sidecar(path: Path, kind: str) -> Path:
    return path.with_name(f"{path.stem}.{kind}.json")


def _json_writer(payload: dict[str, Any]):
    text = json.dumps(payload, indent=2, default=str)
    return lambda tmp: tmp.write_text(text, encoding="utf-8")


def _parquet_writer(frame: pd.DataFrame):
    return lambda tmp: frame.to_parquet(tmp, index=False)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    atomic.write_file(path, _json_writer(payload))


def _raw_info(source: Source, sha256: str, rows: int) -> dict[str, Any]:
    return {
        "key": source.key,
        "path": str(source.path),
        "format": source.format,
        "encoding": source.encoding,
        "delimiter": source.delimiter,
        "columns": source.columns.model_dump(),
        "sha256": sha256,
        "rows": rows,
    }


def write_raw(paths: StatePaths, source: Source, frame: pd.DataFrame, sha256: str) -> None:
    """A raw partition's rows and its source sidecar, together."""
    target = paths.raw(source.key)
    atomic.write_files(
        [
            (target, _parquet_writer(frame)),
            (_sidecar(target, "source"), _json_writer(_raw_info(source, sha256, len(frame)))),
        ]
    )


def write_clean(
    paths: StatePaths,
    key: str,
    kept: pd.DataFrame,
    quarantined: pd.DataFrame,
    stats: dict[str, Any],
    signatures: np.ndarray | None = None,
) -> None:
    """A clean partition: stats sidecar (with its data version), kept and quarantined rows,
    and the kept rows' MinHash signatures when cleaning computed them.

    All are staged first; the stats go in first, which makes the old gate stale. The
    signatures file is named by the data version, so it can never pass for another one;
    those of earlier versions are deleted once the new files are in place."""
    items = [
        (_sidecar(paths.clean(key), "stats"), _json_writer(stats)),
        (paths.clean(key), _parquet_writer(kept)),
        (paths.quarantine(key), _parquet_writer(quarantined)),
    ]
    keep = None
    if signatures is not None:
        if len(signatures) != len(kept):
            raise ValueError(f"{key}: {len(signatures)} signatures for {len(kept)} kept rows")
        keep = _signatures_path(paths, key, stats["data_version"])
        items.append((keep, lambda tmp: save_npy(tmp, signatures)))
    atomic.write_files(items)
    for old in paths.clean(key).parent.glob(f"{paths.clean(key).stem}.signatures-*.npy"):
        if old != keep:
            old.unlink(missing_ok=True)


def _signatures_path(paths: StatePaths, key: str, version: str) -> Path:
    clean = paths.clean(key)
    return clean.with_name(f"{clean.stem}.signatures-{version}.npy")


def save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append ".npy" to a name
        np.save(f, array, allow_pickle=False)


def read_signatures(paths: StatePaths, key: str, version: str, rows: int) -> np.ndarray | None:
    """The signatures cleaning saved for this data version of the partition, if it saved
    them and they hold one row per clean row; None otherwise (the caller computes them)."""
    path = _signatures_path(paths, key, version)
    try:
        sigs = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return sigs if sigs.ndim == 2 and sigs.shape[0] == rows else None


def read_raw_info(paths: StatePaths, key: str) -> dict[str, Any]:
    info = _sidecar(paths.raw(key), "source")
    if not info.is_file():
        raise FileNotFoundError(
            f"partition {key!r} has no raw data yet: materialize raw_data first"
        )
    return json.loads(info.read_text())


def clean_version(raw_info: dict[str, Any], recipe_hash: str) -> str:
    """Data version of a clean partition: raw bytes, column mapping and cleaning recipe."""
    payload = json.dumps([raw_info["sha256"], raw_info["columns"], recipe_hash], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def write_gate(paths: StatePaths, key: str, version: str, failed: list[str]) -> None:
    _write_json(
        _sidecar(paths.clean(key), "gate"),
        {"data_version": version, "passed": not failed, "failed_checks": failed},
    )


def read_gate(paths: StatePaths, key: str) -> dict[str, Any] | None:
    gate = _sidecar(paths.clean(key), "gate")
    return json.loads(gate.read_text()) if gate.is_file() else None


def read_clean_info(paths: StatePaths, key: str) -> dict[str, Any] | None:
    info = _sidecar(paths.clean(key), "stats")
    return json.loads(info.read_text()) if info.is_file() else None


def gated_partitions(
    paths: StatePaths, keys: list[str]
) -> tuple[dict[str, pd.DataFrame], dict[str, str], dict[str, str]]:
    """(frames, data versions, excluded with reason) of the clean partitions `keys`.

    A partition joins only if it was cleaned and checked and its gate passed on its current
    data version; every other one is left out, with the reason."""
    frames, versions, excluded = {}, {}, {}
    for key in keys:
        gate = read_gate(paths, key)
        info = read_clean_info(paths, key)
        if gate is None or info is None:
            excluded[key] = "not cleaned and checked yet"
        elif not gate["passed"] or gate["data_version"] != info["data_version"]:
            excluded[key] = f"quality gate failed: {', '.join(gate['failed_checks']) or 'stale'}"
        else:
            frames[key] = pd.read_parquet(paths.clean(key))
            versions[key] = info["data_version"]
    return frames, versions, excluded
