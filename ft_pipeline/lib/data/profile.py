"""Profile a data file for `ft-pipeline init`: how to read it, and what its columns hold.

The format, encoding and delimiter are guessed from the file's bytes, then the file is read
with `readers.read_source`, the reader the pipeline uses, so a starter recipe reads it
exactly as the pipeline will. Column statistics are measured on what that reader returns.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ft_pipeline.lib.data.readers import ROW_COLUMN, ReadError, csv_delimiter, read_source
from ft_pipeline.lib.data.sources import SUFFIX_FORMATS, Source
from ft_pipeline.recipe import ColumnMapping

DELIMITERS = (",", ";", "\t", "|")
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
SNIFF_BYTES = 64 * 1024
C1_BYTES = re.compile(rb"[\x80-\x9f]")
MESSAGE_SAMPLE = 200


class ProfileError(ValueError):
    """A file `ft-pipeline init` cannot start from; the message says why and what to do."""


@dataclass(frozen=True)
class Sniffed:
    """How to read a file (as `data.sources` will say it) and its rows, as the reader reads them."""

    path: Path
    format: str
    encoding: str
    delimiter: str | None  # CSV only
    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)  # why each setting was chosen

    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns if c != ROW_COLUMN]


@dataclass(frozen=True)
class ColumnStats:
    """One column: how many rows fill it, how many distinct values, how long they are."""

    name: str
    filled: int
    distinct: int
    mean_chars: float
    p50_chars: int
    max_chars: int
    messages: bool  # every value sampled is a JSON list of {role, content}
    sharegpt: bool  # ... of {from, value} (ShareGPT), which the pipeline does not read


def sniff(path: Path, max_mb: float | None = None) -> Sniffed:
    """Format, encoding and delimiter of `path`, and its rows read the pipeline's way."""
    if not path.exists():
        raise ProfileError(
            f"{path}: file does not exist; pass the path of a CSV, TSV, JSONL or Parquet file"
        )
    if not path.is_file():
        raise ProfileError(f"{path}: is not a regular file; pass a data file")
    raw = path.read_bytes()
    if not raw.strip():
        raise ProfileError(f"{path}: the file is empty; init needs a header and rows to profile")
    fmt, notes = sniff_format(path, raw)
    encoding, why = ("utf-8", None) if fmt == "parquet" else sniff_encoding(raw)
    notes += [why] if why else []
    delimiter = None
    if fmt == "csv":
        delimiter, frame, why = _sniff_delimiter(path, encoding, raw)
        notes.append(why)
    else:
        frame = _read(path, fmt, encoding, None, max_mb)
    if len(frame) == 0:
        raise ProfileError(f"{path}: the file has a header but no rows")
    return Sniffed(path, fmt, encoding, delimiter, frame, notes)


def sniff_format(path: Path, raw: bytes) -> tuple[str, list[str]]:
    """(csv | jsonl | parquet, notes): from the content, which wins over the extension."""
    by_suffix = SUFFIX_FORMATS.get(path.suffix.lower())
    if raw.startswith(b"PAR1"):
        fmt = "parquet"
    else:
        head = raw[:SNIFF_BYTES].decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
        first = head.split("\n", 1)[0].strip()
        if first.startswith("[") and by_suffix != "csv":
            raise ProfileError(
                f"{path}: holds one JSON array, not JSON lines (one object per line); "
                "convert it first, e.g. `jq -c '.[]' FILE > FILE.jsonl`"
            )
        fmt = "jsonl" if first.startswith("{") and _json_object(first) else "csv"
    if by_suffix == fmt:
        return fmt, [f"format {fmt} (extension {path.suffix} and content agree)"]
    shown = f"extension {path.suffix or '(none)'}"
    return fmt, [f"format {fmt} from the content ({shown} says {by_suffix or 'nothing'})"]


def _json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def sniff_encoding(raw: bytes) -> tuple[str, str]:
    """(codec the reader will be told, why): UTF-8 when valid, else a single-byte guess.

    charset-normalizer guesses; when its guess is another Latin-script code page (Central
    European, Baltic, ...), whose guesses on short Western texts are mostly ties, the
    Western European reading is taken: latin-1, or cp1252 when the file uses its 0x80-0x9F
    characters (curly quotes, the euro sign). A Cyrillic or Greek guess is kept.
    """
    if raw.startswith(codecs.BOM_UTF8):
        return "utf-8", "encoding utf-8 (with a byte-order mark, which the reader drops)"
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "encoding utf-16 (from its byte-order mark)"
    try:
        raw.decode("utf-8")
        return "utf-8", "encoding utf-8 (every byte is valid UTF-8)"
    except UnicodeDecodeError as exc:
        where = f"not valid UTF-8 from byte {exc.start}"
    import charset_normalizer

    western = _western(raw)
    best = charset_normalizer.from_bytes(raw).best()
    if best is None:
        if western:
            return western, f"encoding {western} ({where}; no better guess)"
        raise ProfileError("the file is not text in any encoding charset-normalizer knows")
    guess = codecs.lookup(best.encoding).name
    if western and _latin_letters(raw.decode(guess, errors="replace")):
        why = f"{where}; Western European, where charset-normalizer's guess was {guess}"
        return western, f"encoding {western} ({why})"
    return guess, f"encoding {guess} ({where}; charset-normalizer's guess)"


def _latin_letters(text: str) -> bool:
    """Whether every letter outside ASCII is a Latin one (é, ą, ř; not я or λ)."""
    return all(
        unicodedata.name(ch, "").startswith("LATIN")
        for ch in set(text)
        if ord(ch) > 127 and ch.isalpha()
    )


def _western(raw: bytes) -> str | None:
    if not C1_BYTES.search(raw):
        return "latin-1"
    try:
        raw.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return None


def _read(
    path: Path, fmt: str, encoding: str, delimiter: str | None, max_mb: float | None
) -> pd.DataFrame:
    source = Source(f"file:{path.name}", path, fmt, encoding, ColumnMapping(), delimiter)
    try:
        return read_source(source, max_mb)
    except ReadError as exc:
        raise ProfileError(str(exc)) from None


def _sniff_delimiter(path: Path, encoding: str, raw: bytes) -> tuple[str, pd.DataFrame, str]:
    """The delimiter that splits the file into the most columns without a parse error.

    csv.Sniffer's guess on the first 64 KB is tried first, then the extension's default and
    the other common ones; each is read with the pipeline's reader.
    """
    default = csv_delimiter(path)
    sample = raw[:SNIFF_BYTES].decode(encoding, errors="replace").removeprefix("\ufeff")
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        sniffed = default
    best: tuple[int, str, pd.DataFrame] | None = None
    errors = []
    for delimiter in dict.fromkeys([sniffed, default, *DELIMITERS]):
        try:
            frame = _read(path, "csv", encoding, delimiter, None)
        except ProfileError as exc:
            errors.append(str(exc))
            continue
        width = len(frame.columns) - 1
        if best is None or width > best[0]:
            best = (width, delimiter, frame)
    if best is None:
        raise ProfileError(errors[0])
    width, delimiter, frame = best
    name = DELIMITER_NAMES[delimiter]
    how = "csv.Sniffer's guess" if delimiter == sniffed else "not csv.Sniffer's guess"
    why = f"delimiter {name} ({how}; it splits the header into {width} columns)"
    return delimiter, frame, why


def column_stats(frame: pd.DataFrame) -> dict[str, ColumnStats]:
    """Statistics of every column the reader returned (all values are text)."""
    stats = {}
    for name in frame.columns:
        if name == ROW_COLUMN:
            continue
        values = frame[name].dropna().astype(str)
        values = values[values.str.strip() != ""]
        lengths = values.str.len().to_numpy() if len(values) else np.zeros(1, dtype=int)
        sample = values.head(MESSAGE_SAMPLE).tolist()
        stats[str(name)] = ColumnStats(
            name=str(name),
            filled=len(values),
            distinct=int(values.str.strip().nunique()),
            mean_chars=float(lengths.mean()),
            p50_chars=int(np.percentile(lengths, 50)),
            max_chars=int(lengths.max()),
            messages=bool(sample) and all(_turns(v, ("role", "content")) for v in sample),
            sharegpt=bool(sample) and all(_turns(v, ("from", "value")) for v in sample),
        )
    return stats


def _turns(value: str, keys: tuple[str, str]) -> bool:
    """Whether a value is a JSON list of messages, each a mapping with both `keys`."""
    if not value.lstrip().startswith("["):
        return False
    try:
        turns = json.loads(value)
    except json.JSONDecodeError:
        return False
    return (
        isinstance(turns, list)
        and bool(turns)
        and all(isinstance(t, dict) and all(k in t for k in keys) for t in turns)
    )
