"""Read CSV, JSONL and Parquet source files into DataFrames, keeping every row.

All values are read as strings (a label "1" stays "1", the text "NA" stays "NA"); the
canonical column mapping is applied later, in cleaning. Errors name the file, the line
or byte, and the reason.
"""

from __future__ import annotations

import codecs
import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ft_pipeline.lib.data.sources import Source
from ft_pipeline.recipe import ColumnMapping

ROW_COLUMN = "source_row"


class ReadError(ValueError):
    """A source file that cannot be read; the message names the file and the reason."""


MB = 2**20
BAD_BYTE = re.compile("[\udc80-\udcff]")  # an undecodable byte, kept by "surrogateescape"
MARK = "\ufdd0"
# What a one-column header that holds one of these probably means: the wrong delimiter.
OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe", ",": "comma"}


def read_source(source: Source, max_mb: float | None = None) -> pd.DataFrame:
    """Read a whole source file; add `source_row` (1-based record number).

    A file over `max_mb` megabytes is refused from its size alone, before any byte is read.
    """
    path = source.path
    if not path.exists():
        raise ReadError(f"{path}: file does not exist")
    if not path.is_file():
        what = "a directory" if path.is_dir() else "not a regular file"
        raise ReadError(f"{path}: is {what}, not a data file")
    size = path.stat().st_size
    if max_mb is not None and size > max_mb * MB:
        raise ReadError(
            f"{path}: the file is {size / MB:.1f} MB, over the recipe's limit of {max_mb:g} MB; "
            "raise data.max_file_mb in the recipe to read it, or split the file"
        )
    if source.format == "csv":
        frame = _read_csv(path, source.encoding, csv_delimiter(path, source.delimiter))
    else:
        frame = {"jsonl": _read_jsonl, "parquet": _read_parquet}[source.format](
            path, source.encoding
        )
    frame = frame.astype(object).where(frame.notna(), None)
    frame.insert(0, ROW_COLUMN, range(1, len(frame) + 1))
    return frame


def _decode(path: Path, encoding: str, locate: Callable[[str], str] | None = None) -> str:
    """The file's text. On bytes that are not valid in `encoding`, a ReadError naming the
    byte and line and, where `locate` finds it in the parsed file, the row and column."""
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise ReadError(f"{path}: unknown encoding {encoding!r} in the recipe") from None
    raw = path.read_bytes()
    # A byte-order mark is not data: left in, the first column would be named "\ufefftext"
    # (or "ï»¿text" when a UTF-8 file with a BOM is read as latin-1).
    skip = 3 if raw.startswith(codecs.BOM_UTF8) and not codec.startswith("utf-16") else 0
    try:
        return raw[skip:].decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        start = exc.start + skip
        line = raw[:start].count(b"\n") + 1
        where = _where(raw[skip:], encoding, locate)
        raise ReadError(
            f"{path}: not valid {encoding} at byte {start} (line {line}{where}): {exc.reason}; "
            "set 'encoding' for this source in the recipe (e.g. latin-1)"
        ) from None


def _where(raw: bytes, encoding: str, locate: Callable[[str], str] | None) -> str:
    """Where the first undecodable byte lands once the file is parsed: ", row 3, column 'text'".

    The file is decoded once more with the bad bytes kept as lone surrogates and parsed; this
    is best effort (the byte and line are named anyway).
    """
    if locate is None:
        return ""
    try:
        return locate(raw.decode(encoding, errors="surrogateescape").removeprefix("\ufeff"))
    except Exception:
        return ""


def _locate_csv(text: str, sep: str) -> str:
    # The CSV parser cannot take lone surrogates: mark bad bytes with a noncharacter instead.
    frame = _parse_csv(BAD_BYTE.sub(MARK, text), sep)
    bad = frame.apply(lambda column: column.str.contains(MARK, regex=False, na=False))
    rows, columns = bad.to_numpy().nonzero()  # row-major: the first bad cell comes first
    if not len(rows):
        return ""
    i, j = rows[0], columns[0]
    return ", in the header" if i == 0 else f", row {i}, column {frame.iloc[0, j]!r}"


def _locate_jsonl(text: str) -> str:
    for row, (_, record) in enumerate(_json_records(Path("-"), text), start=1):
        for key, value in record.items():
            if BAD_BYTE.search(key) or (isinstance(value, str) and BAD_BYTE.search(value)):
                return f", row {row}, field {key!r}"
    return ""


def csv_delimiter(path: Path, declared: str | None = None) -> str:
    """The source's own `delimiter`, else tab for `.tsv` files and comma for the rest."""
    if declared:
        return declared
    return "\t" if path.suffix.lower() == ".tsv" else ","


def _parse_csv(text: str, sep: str) -> pd.DataFrame:
    # header=None: the header line fixes the field count, so a row with an extra field
    # (an unquoted comma) is an error instead of silently shifting or dropping values.
    return pd.read_csv(
        io.StringIO(text), sep=sep, dtype=str, header=None, keep_default_na=False, na_values=[]
    )


def _read_csv(path: Path, encoding: str, sep: str) -> pd.DataFrame:
    text = _decode(path, encoding, lambda escaped: _locate_csv(escaped, sep))
    if not text.strip():
        return pd.DataFrame()
    try:
        frame = _parse_csv(text, sep)
    except pd.errors.ParserError as exc:
        hint = _delimiter_hint(text.split("\n", 1)[0].split(sep), sep)
        raise ReadError(f"{path}: malformed CSV: {exc}{hint}") from None
    header = [str(c) for c in frame.iloc[0]]
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise ReadError(f"{path}: duplicate column names in the header: {duplicated}")
    return frame.iloc[1:].set_axis(header, axis=1).reset_index(drop=True)


def _read_jsonl(path: Path, encoding: str) -> pd.DataFrame:
    text = _decode(path, encoding, _locate_jsonl)
    records = [
        {k: v if isinstance(v, str) or v is None else json.dumps(v) for k, v in value.items()}
        for _, value in _json_records(path, text)
    ]
    return pd.DataFrame.from_records(records)


def _json_records(path: Path, text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a ReadError names a line that is not
    a JSON object."""
    # Split on newlines only: str.splitlines() also breaks on U+2028 and U+0085, which are
    # legal inside JSON strings.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReadError(f"{path}: line {number}: invalid JSON: {exc.msg}") from None
        if not isinstance(value, dict):
            raise ReadError(f"{path}: line {number}: expected a JSON object, got {value!r:.40}")
        yield number, value


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


def _delimiter_hint(header: list[str], sep: str) -> str:
    """A hint when a header split on `sep` has one field that another delimiter would split."""
    if len(header) != 1:
        return ""
    for delimiter, name in OTHER_DELIMITERS.items():
        if delimiter != sep and delimiter in header[0]:
            expected = {",": "comma-separated (.csv)", "\t": "tab-separated (.tsv)"}.get(
                sep, f"{OTHER_DELIMITERS.get(sep, repr(sep))}-separated"
            )
            return (
                f"; the header {header[0]!r} looks {name}-separated, but the file is read as "
                f"{expected}: save it with that delimiter (tab-separated files as .tsv), or "
                f"name it as a source in the recipe with `delimiter: {delimiter!r}` "
                "(`ft-pipeline init FILE` writes such a recipe)"
            )
    return ""


def unmapped_columns(frame: pd.DataFrame, mapping: ColumnMapping) -> list[str]:
    """Columns of a source file that the recipe maps to no field (kept in raw, not used)."""
    used = {c for c in mapping.model_dump().values() if isinstance(c, str)}
    used |= set((mapping.label_columns or {}).values())
    return [str(c) for c in frame.columns if c != ROW_COLUMN and c not in used]


def required_columns(task: str, mapping: ColumnMapping) -> dict[str, str]:
    """Canonical field -> source column that a task cannot do without."""
    if task == "multilabel" and mapping.label_columns:
        # One 0/1 column per label instead of a `label` column (label_sets).
        flags = {f"label_columns.{k}": v for k, v in mapping.label_columns.items()}
        return {"text": _mapped(mapping, "text"), **flags}
    fields = {
        "classification": ["text", "label"],
        "multilabel": ["text", "label"],
        "instruction": ["prompt", "response"],
        "chat": ["messages"],
    }[task]
    return {f: _mapped(mapping, f) for f in fields}


def _mapped(mapping: ColumnMapping, field: str) -> str:
    column = getattr(mapping, field)
    if column is None:
        raise ReadError(f"the recipe maps no column for required fields {[field]}")
    return column


def schema_problems(
    frame: pd.DataFrame, task: str, mapping: ColumnMapping, delimiter: str | None = None
) -> list[str]:
    """What keeps a raw partition from being cleaned: missing columns, no rows.

    `delimiter`: the one a CSV file was split on, to spot a file with another one.
    """
    columns = [str(c) for c in frame.columns if c != ROW_COLUMN]
    if not columns and len(frame) == 0:
        return ["the file is empty: no header and no rows"]
    problems = []
    for field, column in required_columns(task, mapping).items():
        if column not in columns:
            problems.append(f"missing column {column!r} (the recipe's {field!r})")
    if problems and delimiter:
        problems.append(_delimiter_hint(columns, delimiter).removeprefix("; "))
    if len(frame) == 0:
        problems.append("the file has no rows")
    return [p for p in problems if p]
