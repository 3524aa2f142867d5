"""Per-partition work that the tokenized join reuses from one build to the next.

A clean partition's MinHash signatures depend only on its data version, and its encoded
rows only on that and the recipe's tokenization settings. Both are kept on disk under the
state folder, so adding one file costs its own rows: the join, deduplication and split of
all rows that follow are cheap. A cache entry that cannot be read, or does not match the
partition's row count, is recomputed (and rewritten); entries of partition versions no
longer joined are deleted after each build.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import transformers

from ft_pipeline.lib.data.dedup import signatures
from ft_pipeline.lib.data.partition_store import save_npy
from ft_pipeline.lib.data.rendering import EncodedRows
from ft_pipeline.lib.state import atomic
from ft_pipeline.lib.state.paths import slug

log = logging.getLogger(__name__)
FORMAT = "1"  # bump when what is cached changes shape
POS = "_pos"  # a row's position in its clean partition


class PartitionCache:
    """Signatures and encoded rows per (partition, version); `root=None` caches nothing.

    `saved(key, version, rows)`, if given, returns the signatures cleaning saved with the
    partition (or None): they are used before this cache's own."""

    def __init__(
        self,
        root: Path | None,
        tokenization: str = "",
        saved: Callable[[str, str, int], np.ndarray | None] | None = None,
    ) -> None:
        self.root = root
        self.saved = saved
        self.tokenization = hashlib.sha256(
            f"{FORMAT}:{tokenization}:{transformers.__version__}".encode()
        ).hexdigest()[:12]
        self.used: set[Path] = set()
        self.hits = self.misses = 0

    def _path(self, kind: str, key: str, version: str, suffix: str) -> Path | None:
        if self.root is None:
            return None
        extra = f"-{self.tokenization}" if kind == "encoded" else f"-{FORMAT}"
        path = self.root / kind / f"{slug(key)}-{version}{extra}{suffix}"
        self.used.add(path)
        return path

    def signatures(self, key: str, version: str, frame: pd.DataFrame) -> np.ndarray:
        """MinHash signatures of the partition's dedup keys, one row per clean row."""
        known = self.saved(key, version, len(frame)) if self.saved and version else None
        if known is not None:
            self.hits += 1
            return known
        path = self._path("signatures", key, version, ".npy")
        if path is not None and path.is_file():
            try:
                sigs = np.load(path, allow_pickle=False)
                if sigs.shape[0] == len(frame):
                    self.hits += 1
                    return sigs
            except (OSError, ValueError) as exc:
                log.warning("%s: unreadable signature cache (%s); recomputing", path, exc)
        self.misses += 1
        sigs = signatures(frame["dedup_key"].tolist())
        if path is not None:
            _write(path, lambda tmp: save_npy(tmp, sigs))
        return sigs

    def encoded(
        self,
        key: str,
        version: str,
        frame: pd.DataFrame,
        encode: Callable[[pd.DataFrame], EncodedRows],
    ) -> EncodedRows:
        """The partition's rows encoded (kept and too-long ones), each with its position."""
        kept_path = self._path("encoded", key, version, ".parquet")
        dropped_path = self._path("encoded", key, version, ".dropped.parquet")
        if kept_path is not None and kept_path.is_file() and dropped_path.is_file():
            try:
                rows, dropped = pd.read_parquet(kept_path), pd.read_parquet(dropped_path)
                if len(rows) + len(dropped) == len(frame):
                    self.hits += 1
                    return EncodedRows(rows, dropped)
            except (OSError, ValueError) as exc:
                log.warning("%s: unreadable encoding cache (%s); recomputing", kept_path, exc)
        self.misses += 1
        result = encode(frame.assign(**{POS: np.arange(len(frame))}))
        if kept_path is not None:
            _write(dropped_path, lambda tmp: result.dropped.to_parquet(tmp, index=False))
            _write(kept_path, lambda tmp: result.rows.to_parquet(tmp, index=False))
        return result

    def prune(self) -> int:
        """Delete entries not used since this cache object was made; returns how many."""
        if self.root is None:
            return 0
        stale = [p for kind in ("signatures", "encoded") for p in (self.root / kind).glob("*")]
        removed = 0
        for path in stale:
            if path not in self.used and path.is_file():
                try:  # a read-only or full disk: stale entries stay, nothing breaks
                    path.unlink(missing_ok=True)
                    removed += 1
                except OSError as exc:
                    log.warning("%s: could not delete stale cache entry (%s)", path, exc)
        return removed


def _write(path: Path, save: Callable[[Path], None]) -> None:
    """Write through a temporary name and rename, so a reader never sees half a file.

    A cache that cannot be written (disk full, read-only) only costs speed: warn, go on.
    """
    try:
        atomic.write_file(path, save)
    except OSError as exc:
        log.warning("%s: could not write cache entry (%s)", path, exc)
