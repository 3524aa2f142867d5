"""Read CSV, JSONL and Parquet source files into DataFrames, keeping every row.

All values are read as strings (a label "1" stays "1", the text "NA" stays "NA"); the
canonical column mapping is applied later, in cleaning. Errors name the file, the line
or byte, and the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ft_pipeline.lib.sources import Source
from ft_pipeline.recipe import ColumnMapping

ROW_COLUMN = "source_row"


class ReadError(ValueError):
    """A source file that cannot be read; the message names the file and the reason."""


def read_source(source: Source) -> pd.DataFrame:
    """Read a whole source file; add `source_row` (1-based record number)."""
    path = source.path
    if not path.is_file():
        raise ReadError(f"{path}: file does not exist")
    readers = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet}
    frame = readers[source.format](path, source.encoding)
    frame = frame.astype(object).where(frame.notna(), None)
    frame.insert(0, ROW_COLUMN, range(1, len(frame) + 1))
    return frame


def _decode(path: Path, encoding: str) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ReadError(
            f"{path}: not valid {encoding} at byte {exc.start} (line {line}): {exc.reason}; "
            "set 'encoding' for this source in the recipe (e.g. latin-1)"
        ) from None
    except LookupError:
        raise ReadError(f"{path}: unknown encoding {encoding!r} in the recipe") from None


def _read_csv(path: Path, encoding: str) -> pd.DataFrame:
    import io

    text = _decode(path, encoding)
    if not text.strip():
        return pd.DataFrame()
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        # header=None: the header line fixes the field count, so a row with an extra field
        # (an unquoted comma) is an error instead of silently shifting or dropping values.
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, header=None, keep_default_na=False, na_values=[]
        )
    except pd.errors.ParserError as exc:
        raise ReadError(f"{path}: malformed CSV: {exc}") from None
    header = [str(c) for c in frame.iloc[0]]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise ReadError(f"{path}: duplicate column names in the header: {duplicated}")
    return frame.iloc[1:].set_axis(header, axis=1).reset_index(drop=True)


def _read_jsonl(path: Path, encoding: str) -> pd.DataFrame:
    records = []
    # Split on newlines only: str.splitlines() also breaks on U+2028 and U+0085, which are
    # legal inside JSON strings.
    for number, line in enumerate(_decode(path, encoding).split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReadError(f"{path}: line {number}: invalid JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise ReadError(f"{path}: line {number}: expected a JSON object, got {value!r:.40}")
        records.append(
            {k: v if isinstance(v, str) or v is None else json.dumps(v) for k, v in value.items()}
        )
    return pd.DataFrame.from_records(records)


def _read_parquet(path: Path, encoding: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ReadError(f"{path}: not a readable Parquet file: {exc}") from None
    # Column by column through Python objects: to_pandas() would turn an int column with
    # a null into floats, and the label 1 into "1.0".
    return pd.DataFrame(
        {name: [_to_text(v) for v in table.column(name).to_pylist()] for name in table.column_names}
    )


def _to_text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def required_columns(task: str, mapping: ColumnMapping) -> dict[str, str]:
    """Canonical field -> source column that a task cannot do without."""
    fields = {
        "classification": ["text", "label"],
        "instruction": ["prompt", "response"],
        "chat": ["messages"],
    }[task]
    missing_mapping = [f for f in fields if getattr(mapping, f) is None]
    if missing_mapping:
        raise ReadError(f"the recipe maps no column for required fields {missing_mapping}")
    return {f: getattr(mapping, f) for f in fields}


def schema_problems(frame: pd.DataFrame, task: str, mapping: ColumnMapping) -> list[str]:
    """What keeps a raw partition from being cleaned: missing columns, no rows."""
    problems = []
    present = set(frame.columns)
    for field, column in required_columns(task, mapping).items():
        if column not in present:
            problems.append(f"missing column {column!r} (the recipe's {field!r})")
    if len(frame) == 0:
        problems.append("the file has no rows")
    return problems
