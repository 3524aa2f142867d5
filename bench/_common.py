"""Shared helpers for the benches: the bundled corpus cleaned, peak RSS, JSON lines."""

from __future__ import annotations

import argparse
import json
import resource
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ft_pipeline.lib.data.cleaning import clean_frame  # noqa: E402
from ft_pipeline.lib.data.readers import read_source  # noqa: E402
from ft_pipeline.lib.data.sources import BUNDLED_TWEETS, resolve  # noqa: E402
from ft_pipeline.recipe import Recipe  # noqa: E402

MODELS_DIR = ROOT / ".ft_home" / "models"  # reuse the converted SmolLM2 when present
RESULTS_DIR = ROOT / "bench" / "results"


def clean_tweets(recipe: Recipe) -> dict[str, pd.DataFrame]:
    """The bundled tweet corpus cleaned by `recipe`, keyed as build_tokenized expects."""
    source = resolve(BUNDLED_TWEETS, recipe, ROOT, Path("/nonexistent"))
    return {
        BUNDLED_TWEETS: clean_frame(read_source(source), recipe, source.columns, source.key).kept
    }


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def emit_json(row: dict, path: Path | None = None) -> None:
    """Print `row` as one JSON line and, with `path`, append it there too."""
    line = json.dumps(row)
    print(line, flush=True)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(line + "\n")


def rows_args(
    doc: str | None,
    default: int,
    quick: int,
    extend: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The command line of a bench sized in rows: --rows, --quick (`quick` rows), --out."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--rows", type=int, default=default, help=f"default {default}")
    parser.add_argument("--quick", action="store_true", help=f"{quick} rows, a smoke run")
    parser.add_argument("--out", default=str(RESULTS_DIR), help="where results are appended")
    if extend:
        extend(parser)
    args = parser.parse_args()
    args.rows = quick if args.quick else args.rows
    return args
