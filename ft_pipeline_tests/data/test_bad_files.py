"""Bad files in the landing folder, each through Dagster on a real instance.

Each case either fails its own partition with a message that names the file and the line /
column where that applies, or is read with every row accounted for; a good partition in the
same instance still materializes afterwards.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ft_pipeline.lib.data import readers
from ft_pipeline.recipe import DataConfig
from ft_pipeline_tests.conftest import fixture_rows
from ft_pipeline_tests.reliability_input import Site, csv_text, jsonl_text

ROWS = fixture_rows(4, seed=11)  # 12 rows, 4 per label
SCHEMA = "raw_data_schema"


@pytest.fixture
def site(tmp_path: Path):
    with dg.DagsterInstance.ephemeral() as instance:
        yield Site(tmp_path, instance)


def _parquet(rows: list[dict[str, str]]) -> bytes:
    buf = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buf)
    return buf.getvalue()


def test_missing_required_column_fails_the_schema_check_naming_file_and_column(site: Site):
    rows = [{"text": r["text"], "sentiment": r["label"]} for r in ROWS]
    path = site.land("no_label.csv", csv_text(rows))
    description = site.ingest("no_label.csv").failed_check(SCHEMA)
    assert f"{path}: missing column 'label' (the recipe's 'label')" in description
    site.good()


def test_extra_columns_are_kept_in_raw_and_listed_as_unmapped(site: Site):
    rows = [{**r, "user_id": "u1", "lang": "en"} for r in ROWS]
    outcome = site.ingest("extra.csv", csv_text(rows))
    kept, quarantined = outcome.accounted(len(ROWS))
    assert len(kept) == len(ROWS) and quarantined.empty
    assert outcome.metadata("raw_data")["unmapped_columns"] == ["user_id", "lang"]
    site.good()


@pytest.mark.parametrize(
    ("sep", "name", "commas_in_text"),
    [
        pytest.param(";", "semicolon", False, id="semicolon"),
        pytest.param(";", "semicolon", True, id="semicolon-with-commas-in-text"),
        pytest.param("\t", "tab", False, id="tab-in-a-csv"),
    ],
)
def test_wrong_delimiter_names_file_and_the_delimiter_it_looks_like(
    site: Site, sep: str, name: str, commas_in_text: bool
):
    rows = [{**r, "text": r["text"] + (", really" if commas_in_text else "")} for r in ROWS]
    path = site.land("semi.csv", pd.DataFrame(rows)[["text", "label"]].to_csv(sep=sep, index=False))
    outcome = site.ingest("semi.csv")
    if commas_in_text:  # the rows have more fields than the one-column header: a read error
        message = outcome.error()
        assert f"{path}: malformed CSV" in message and "line 2" in message
    else:  # one column named "text;label": the schema check names the missing columns
        message = outcome.failed_check(SCHEMA)
        assert f"{path}: missing column 'text'" in message
    assert f"looks {name}-separated" in message
    assert "comma-separated" in message
    site.good()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_non_utf8_bytes_fail_naming_file_line_row_and_column(site: Site, suffix: str):
    rows = [*ROWS[:3], {"text": "café crème at the gate", "label": "neutral"}, *ROWS[3:]]
    text = csv_text(rows) if suffix == ".csv" else jsonl_text(rows)
    path = site.land(f"latin1{suffix}", text.encode("latin-1"))
    message = site.ingest(path.name).error()
    assert str(path) in message
    assert "not valid utf-8 at byte" in message
    if suffix == ".csv":  # line 5 after the header; rows count records
        assert "(line 5, row 4, column 'text'): invalid continuation byte" in message
    else:
        assert "(line 4, row 4, field 'text'): invalid continuation byte" in message
    assert "set 'encoding' for this source in the recipe (e.g. latin-1)" in message
    site.good()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_utf8_bom_is_not_part_of_the_first_column(site: Site, suffix: str):
    text = csv_text(ROWS) if suffix == ".csv" else jsonl_text(ROWS)
    outcome = site.ingest(f"bom{suffix}", b"\xef\xbb\xbf" + text.encode("utf-8"))
    kept, _ = outcome.accounted(len(ROWS))
    assert kept["text"].tolist()[0] == ROWS[0]["text"]
    assert outcome.metadata("raw_data")["columns"][:2] == ["source_row", "text"]
    site.good()


def test_utf8_bom_read_as_latin1_is_dropped_too(tmp_path: Path):
    with dg.DagsterInstance.ephemeral() as instance:
        site = Site(tmp_path, instance, data={"encoding": "latin-1"})
        outcome = site.ingest("bom.csv", b"\xef\xbb\xbf" + csv_text(ROWS).encode("utf-8"))
        kept, _ = outcome.accounted(len(ROWS))
        assert kept["text"].iloc[0] == ROWS[0]["text"]
        assert outcome.metadata("raw_data")["columns"][:2] == ["source_row", "text"]


@pytest.mark.parametrize(
    "name", ["empty.csv", "empty.jsonl", "blank_lines.csv"], ids=["csv", "jsonl", "blank-lines"]
)
def test_empty_file_fails_the_schema_check(site: Site, name: str):
    path = site.land(name, "" if "empty" in name else "\n  \n\n")
    description = site.ingest(name).failed_check(SCHEMA)
    assert description.startswith(f"measured: {path}: the file is empty: no header and no rows;")
    site.good()


def test_empty_parquet_file_fails_naming_the_file(site: Site):
    path = site.land("empty.parquet", b"")
    message = site.ingest("empty.parquet").error()
    assert f"{path}: not a readable Parquet file" in message
    site.good()


def test_header_only_file_fails_the_schema_check(site: Site):
    path = site.land("header.csv", "text,label,confidence\n")
    description = site.ingest("header.csv").failed_check(SCHEMA)
    assert description.startswith(f"measured: {path}: the file has no rows;")
    site.good()


def test_truncated_parquet_fails_naming_the_file(site: Site):
    data = _parquet(ROWS)
    path = site.land("cut.parquet", data[: len(data) // 2])
    message = site.ingest("cut.parquet").error()
    assert f"{path}: not a readable Parquet file" in message
    site.good()


def test_jsonl_with_one_broken_line_fails_naming_file_and_line(site: Site):
    lines = [json.dumps(r) for r in ROWS]
    lines[6] = lines[6][:-10]  # line 7 is cut off mid-object
    path = site.land("broken.jsonl", "\n".join(lines) + "\n")
    message = site.ingest("broken.jsonl").error()
    assert f"{path}: line 7: invalid JSON" in message
    assert "line 6" not in message and "line 8" not in message
    site.good()


def test_file_over_the_size_limit_is_refused_from_its_size(site: Site, monkeypatch):
    assert DataConfig().max_file_mb == 100
    path = site.land("huge.csv", "text,label\n")
    with path.open("r+b") as f:  # sparse: 200 MB on paper, a few bytes on disk
        f.truncate(200 * 2**20)
    monkeypatch.setattr(readers, "_read_csv", _no_reading)
    message = site.ingest("huge.csv").error()
    assert str(path) in message
    assert "the file is 200.0 MB, over the recipe's limit of 100 MB" in message
    assert "raise data.max_file_mb" in message
    monkeypatch.undo()
    site.good()


def _no_reading(path: Path, encoding: str) -> pd.DataFrame:
    raise AssertionError(f"{path} was read")


def test_size_limit_comes_from_the_recipe(tmp_path: Path):
    with dg.DagsterInstance.ephemeral() as instance:
        site = Site(tmp_path, instance, data={"max_file_mb": 0.001})  # 1,048 bytes
        path = site.land("big.csv", csv_text(fixture_rows(20)))
        message = site.ingest("big.csv").error()
        assert f"{path}: the file is 0.0 MB, over the recipe's limit of 0.001 MB" in message
        site.ingest("small.csv", csv_text(ROWS[::4])).accounted(3)
