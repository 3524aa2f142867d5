"""Per-partition files: raw/clean/quarantine Parquet plus small JSON sidecars.

The sidecars record how a raw file was read (so cleaning uses the same column mapping) and
whether a clean partition passed its quality gate (so the join only takes trusted data).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ft_pipeline.lib.sources import Source
from ft_pipeline.lib.state import StatePaths


def _sidecar(path: Path, kind: str) -> Path:
    return path.with_name(f"{path.stem}.{kind}.json")


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def write_raw_info(paths: StatePaths, source: Source, sha256: str, rows: int) -> None:
    _write_json(
        _sidecar(paths.raw(source.key), "source"),
        {
            "key": source.key,
            "path": str(source.path),
            "format": source.format,
            "encoding": source.encoding,
            "columns": source.columns.model_dump(),
            "sha256": sha256,
            "rows": rows,
        },
    )


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


def write_clean_info(paths: StatePaths, key: str, payload: dict[str, Any]) -> None:
    _write_json(_sidecar(paths.clean(key), "stats"), payload)


def read_clean_info(paths: StatePaths, key: str) -> dict[str, Any] | None:
    info = _sidecar(paths.clean(key), "stats")
    return json.loads(info.read_text()) if info.is_file() else None
