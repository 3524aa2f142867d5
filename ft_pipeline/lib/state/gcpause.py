"""Pause Python's cyclic garbage collector around allocation-heavy loops.

Building many small lists and dicts triggers full collections, and each one walks every
object in the process. Inside a Dagster step (pandas, torch, transformers and Dagster
itself loaded) that walk costs more than the work: measured on the tokenized join, a
third of the step. Reference counting still frees everything as usual.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic collector inside the block; restore its previous state after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
