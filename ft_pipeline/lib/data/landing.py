"""Change detection for the landing folder, by content hash (no Dagster here).

Each file in the landing folder is one `incoming:<file name>` partition. A file version is
identified by the SHA-256 of its bytes, so touching a file (new mtime, same bytes) is not a
change and rewriting it with new bytes is, whatever its mtime says.

Hashing every file on every tick would be wasteful, so a cursor remembers, per file name,
the size, mtime and hash seen last time: a file whose size and mtime are unchanged is not
re-read. The cursor is a JSON-serialisable dict
`{file name: {"size": int, "mtime_ns": int, "sha256": str}}`.

A file that cannot be read this tick (permission denied, vanished between listing and
hashing, still changing while being hashed) is skipped and retried on the next tick; a file
that is gone is dropped from the cursor. An entry with a data-file name that is not a file
the pipeline may read (a directory, a symlink to somewhere outside the landing folder) is
ignored with its reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ft_pipeline.lib.data.sources import SUFFIX_FORMATS, entry_problem, is_ignored
from ft_pipeline.lib.state.paths import file_sha256

INCOMING_PREFIX = "incoming:"
# Substrings Dagster rejects in partition keys (dagster's INVALID_PARTITION_SUBSTRINGS). A file
# named like this could never become a partition, and adding it would fail the whole tick.
INVALID_KEY_SUBSTRINGS = ("...", "\a", "\b", "\f", "\n", "\r", "\t", "\v", "\0")

Cursor = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class LandedFile:
    """One new or changed file version to ingest."""

    key: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class ScanResult:
    """What one scan of the landing folder found.

    `changed`: new or changed file versions, sorted by name; `cursor`: the cursor for the next
    scan; `checked`: eligible files looked at; `unreadable` and `rejected`: file names skipped
    this time (retried next scan) and names that can never be partition keys; `ignored`:
    entries with a data-file name that are not readable files (name -> reason).
    """

    changed: list[LandedFile]
    cursor: Cursor
    checked: int
    unreadable: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    folder_missing: bool = False
    ignored: dict[str, str] = field(default_factory=dict)


def incoming_key(name: str) -> str:
    """The partition key of a landing-folder file (as `sources.discover` builds it)."""
    return f"{INCOMING_PREFIX}{name}"


def is_eligible_name(name: str) -> bool:
    """A name the pipeline ingests: not hidden/in-progress, and a supported file type."""
    return not is_ignored(name) and Path(name).suffix.lower() in SUFFIX_FORMATS


def is_valid_key_name(name: str) -> bool:
    """Whether `incoming:<name>` is a partition key Dagster accepts."""
    return not any(bad in name for bad in INVALID_KEY_SUBSTRINGS)


def parse_cursor(raw: str | None) -> Cursor:
    """The cursor stored by the previous scan; empty when absent or unreadable.

    A lost cursor is harmless: every file is hashed once more and, because run keys name the
    file version, versions that already ran are not run again.
    """
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        name: entry
        for name, entry in data.items()
        if isinstance(name, str)
        and isinstance(entry, dict)
        and isinstance(entry.get("size"), int)
        and isinstance(entry.get("mtime_ns"), int)
        and isinstance(entry.get("sha256"), str)
    }


def dump_cursor(cursor: Mapping[str, Mapping[str, Any]]) -> str:
    """The cursor as a stable JSON string (sorted keys, so unchanged state compares equal)."""
    return json.dumps(cursor, sort_keys=True, separators=(",", ":"))


def scan(landing: Path, previous: Mapping[str, Mapping[str, Any]]) -> ScanResult:
    """Compare the landing folder with the previous cursor.

    A file is re-hashed only when its size or mtime differs from the cursor entry, and
    reported only when its hash differs (or it is new). Entries of vanished files are dropped.
    """
    if not landing.is_dir():
        return ScanResult(changed=[], cursor={}, checked=0, folder_missing=True)
    changed: list[LandedFile] = []
    cursor: Cursor = {}
    unreadable: list[str] = []
    rejected: list[str] = []
    checked = 0
    candidates, ignored = _candidates(landing)
    for path in candidates:
        name = path.name
        if not is_valid_key_name(name):
            rejected.append(name)
            continue
        checked += 1
        old = previous.get(name)
        entry = _fingerprint(path, old)
        if entry is None:
            unreadable.append(name)
            if old is not None:
                cursor[name] = dict(old)  # keep what we knew; retried next scan
            continue
        cursor[name] = entry
        if old is None or old.get("sha256") != entry["sha256"]:
            changed.append(LandedFile(incoming_key(name), path, entry["sha256"]))
    return ScanResult(changed, cursor, checked, unreadable, rejected, ignored=ignored)


def _candidates(landing: Path) -> tuple[list[Path], dict[str, str]]:
    """Eligible regular files in the landing folder sorted by name, and the entries with an
    eligible name that were refused (name -> reason)."""
    try:
        entries = list(os.scandir(landing))
    except OSError:
        return [], {}
    paths = []
    ignored: dict[str, str] = {}
    for entry in entries:
        if not is_eligible_name(entry.name):
            continue
        path = Path(entry.path)
        try:
            problem = entry_problem(path, landing)
        except OSError as exc:
            problem = f"cannot be inspected ({exc})"
        if problem:
            ignored[entry.name] = problem
            continue
        paths.append(path)
    return sorted(paths, key=lambda p: p.name), dict(sorted(ignored.items()))


def _fingerprint(path: Path, old: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Size, mtime and hash of a file; reuses the old hash when size and mtime match.

    None when the file cannot be read or changes while being hashed (a writer that ignored
    the rename convention): it is looked at again next scan.
    """
    try:
        before = path.stat()
    except OSError:
        return None
    size, mtime_ns = before.st_size, before.st_mtime_ns
    if old is not None and old.get("size") == size and old.get("mtime_ns") == mtime_ns:
        return {"size": size, "mtime_ns": mtime_ns, "sha256": old["sha256"]}
    try:
        sha = file_sha256(path)
        after = path.stat()
    except OSError:
        return None
    if (after.st_size, after.st_mtime_ns) != (size, mtime_ns):
        return None
    return {"size": size, "mtime_ns": mtime_ns, "sha256": sha}
