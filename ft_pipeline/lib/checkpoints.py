"""Training checkpoints that are either complete or ignored.

A checkpoint is written into `step-NNNNNN.tmp/`, gets a `.complete` marker as its last
file, and is then renamed into place. A crash at any point leaves either a finished
checkpoint or a folder without the marker, which `latest()` skips.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

COMPLETE = ".complete"
STATE_FILE = "state.pt"
META_FILE = "meta.json"


def _name(step: int) -> str:
    return f"step-{step:06d}"


def save(root: Path, step: int, state: dict[str, Any], meta: dict[str, Any], keep: int = 2) -> Path:
    """Atomically write a checkpoint; keep only the newest `keep` complete ones."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / _name(step)
    tmp = root / f"{_name(step)}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    torch.save(state, tmp / STATE_FILE)
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    (tmp / COMPLETE).write_text(str(step))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in complete(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete(root: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if p.is_dir() and (p / COMPLETE).is_file()]
    return sorted(found, key=lambda p: p.name)


def incomplete(root: Path) -> list[Path]:
    """Checkpoint folders without the marker (a crash while writing)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if p.is_dir() and not (p / COMPLETE).is_file())


def latest(root: Path) -> Path | None:
    found = complete(root)
    return found[-1] if found else None


def load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    return state, json.loads((path / META_FILE).read_text())
