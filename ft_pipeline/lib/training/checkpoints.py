"""Training checkpoints that are complete and intact, or skipped.

A checkpoint is written into `step-NNNNNN.tmp/` (`state.pt`, `meta.json`, each fsynced),
gets a `.complete` marker as its last file, and is then renamed into place. The marker is
JSON: the step and the size and SHA-256 of every file. A crash at any point leaves either
a finished checkpoint or a folder without the marker, which is never used.

Loading trusts nothing on disk: the marker must match the files byte for byte, `meta.json`
must parse, and `state.pt` is read with `torch.load(weights_only=True)`, which builds only
tensors and plain containers and never runs code from the file. `load_latest()` goes from
the newest checkpoint to the oldest: one that fails is named in a warning, moved aside to
`step-NNNNNN.corrupt/` and the one before it is tried. `save()` keeps at least the two
newest checkpoints, so a damaged newest one still has one to fall back to.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ft_pipeline.lib.state.paths import file_sha256

COMPLETE = ".complete"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
CORRUPT_SUFFIX = ".corrupt"
MIN_KEEP = 2
_NAME = re.compile(r"^step-(\d+)$")
_TMP = re.compile(r"^step-(\d+)\.tmp$")

logger = logging.getLogger(__name__)


class CorruptCheckpoint(ValueError):
    """A checkpoint that is damaged, incomplete or not loadable without running code."""


def _name(step: int) -> str:
    return f"step-{step:06d}"


def _step(path: Path) -> int:
    match = _NAME.match(path.name)
    return int(match.group(1)) if match else -1


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform that cannot open folders: the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save(root: Path, step: int, state: dict[str, Any], meta: dict[str, Any], keep: int = 2) -> Path:
    """Atomically write a checkpoint; keep the newest `keep` (at least 2) complete ones.

    `state` must hold only tensors and plain containers (dict, list, tuple, str, int, float,
    bool, None): it is read back with `weights_only=True`.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / _name(step)
    tmp = root / f"{_name(step)}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    with open(tmp / STATE_FILE, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    _write(tmp / META_FILE, json.dumps(meta, indent=2, default=str).encode())
    files = {
        name: {"size": (tmp / name).stat().st_size, "sha256": file_sha256(tmp / name)}
        for name in (STATE_FILE, META_FILE)
    }
    _write(tmp / COMPLETE, json.dumps({"step": step, "files": files}, indent=2).encode())
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _fsync_dir(root)
    _prune(root, step, max(keep, MIN_KEEP))
    return final


def _prune(root: Path, step: int, keep: int) -> None:
    for old in complete(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.iterdir():  # left by a crash while writing an earlier one
        match = _TMP.match(stale.name)
        if match and stale.is_dir() and int(match.group(1)) < step:
            shutil.rmtree(stale, ignore_errors=True)


def complete(root: Path) -> list[Path]:
    """Checkpoints with their marker (not yet verified), oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _step(p) >= 0 and (p / COMPLETE).is_file()]
    return sorted(found, key=_step)


def incomplete(root: Path) -> list[Path]:
    """Checkpoint folders without the marker (a crash while writing)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if p.is_dir() and not (p / COMPLETE).is_file())


def _check_files(path: Path) -> None:
    try:
        marker = json.loads((path / COMPLETE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCheckpoint(f"unreadable {COMPLETE} marker: {exc}") from exc
    if not isinstance(marker, dict):  # written before the marker recorded digests
        marker = {"files": {}}
    for name in (STATE_FILE, META_FILE):
        file = path / name
        if not file.is_file():
            raise CorruptCheckpoint(f"{name} is missing")
        expected = marker.get("files", {}).get(name)
        if expected is None:
            continue
        size = file.stat().st_size
        if size != expected["size"]:
            raise CorruptCheckpoint(f"{name} has {size} bytes, {expected['size']} were written")
        if file_sha256(file) != expected["sha256"]:
            raise CorruptCheckpoint(f"{name} does not match the SHA-256 written with it")


def load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, meta) of one checkpoint; `CorruptCheckpoint` when it does not verify."""
    _check_files(path)
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptCheckpoint(f"{META_FILE} does not parse: {exc}") from exc
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, garbage, or a pickle that wants to run code
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CorruptCheckpoint(
            f"{STATE_FILE} does not load as weights: {type(exc).__name__}: {first}"
        ) from exc
    if not isinstance(state, dict) or not isinstance(meta, dict):
        raise CorruptCheckpoint(f"{STATE_FILE} and {META_FILE} must each hold a mapping")
    return state, meta


def set_aside(path: Path) -> Path:
    """Move a bad checkpoint out of the way (kept for inspection, never loaded again)."""
    target = path.with_name(path.name + CORRUPT_SUFFIX)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(path, target)
    return target


def load_latest(
    root: Path,
    check: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[Path, dict[str, Any], dict[str, Any]] | None:
    """The newest checkpoint that verifies (and passes `check`), as (path, state, meta).

    A checkpoint that fails is set aside with a warning that names it, and the one before
    it is tried. `check(state, meta)` raises `CorruptCheckpoint` (a ValueError; KeyError,
    TypeError and AttributeError count too) for content that does not fit the caller.
    """
    for path in reversed(complete(root)):
        try:
            state, meta = load(path)
            if check is not None:
                check(state, meta)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = set_aside(path)
            message = (
                f"skipping corrupt checkpoint {path}: {exc}; moved it to {aside.name} "
                "and trying the previous checkpoint"
            )
            (warn or logger.warning)(message)
            continue
        return path, state, meta
    return None


def latest(root: Path, warn: Callable[[str], None] | None = None) -> Path | None:
    """The newest checkpoint that verifies; bad ones are set aside with a warning."""
    found = load_latest(root, warn=warn)
    return found[0] if found else None
