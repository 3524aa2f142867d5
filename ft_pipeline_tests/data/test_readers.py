"""Unit tests for ft_pipeline.lib.data.readers on files in tmp_path."""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ft_pipeline.lib.data.readers import (
    ROW_COLUMN,
    ReadError,
    read_source,
    required_columns,
    schema_problems,
)
from ft_pipeline.lib.data.sources import Source, detect_format
from ft_pipeline.recipe import ColumnMapping

MAPPING = ColumnMapping()


def source_for(path, encoding="utf-8", fmt=None):
    return Source(f"incoming:{path.name}", path, fmt or detect_format(path), encoding, MAPPING)


def read(path, **kwargs):
    return read_source(source_for(path, **kwargs))


def write_jsonl(path, records, **dumps):
    path.write_text("".join(json.dumps(r, **dumps) + "\n" for r in records), encoding="utf-8")


# --- read_source --------------------------------------------------------------------------


def test_csv(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('text,label\nhello,pos\nNA,1\n"a, quoted\nline",neg\n,null\n', encoding="utf-8")
    frame = read(path)
    assert list(frame.columns) == [ROW_COLUMN, "text", "label"]
    assert frame[ROW_COLUMN].tolist() == [1, 2, 3, 4]
    assert frame["text"].tolist() == ["hello", "NA", "a, quoted\nline", ""]
    assert frame["label"].tolist() == ["pos", "1", "neg", "null"]
    assert all(isinstance(v, str) for v in frame["label"])


def test_tsv(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("text\tlabel\nhello, world\tpos\nNA\tneg\n", encoding="utf-8")
    frame = read(path)
    assert frame[ROW_COLUMN].tolist() == [1, 2]
    assert frame["text"].tolist() == ["hello, world", "NA"]
    assert frame["label"].tolist() == ["pos", "neg"]


def test_jsonl(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(
        '{"text": "hello", "label": "pos"}\n'
        "\n"
        '{"text": "NA", "label": 1, "confidence": 0.5}\n'
        '{"text": null, "label": "neg", "messages": [{"role": "user", "content": "x"}]}\n',
        encoding="utf-8",
    )
    frame = read(path)
    assert frame[ROW_COLUMN].tolist() == [1, 2, 3]
    assert frame["text"].tolist() == ["hello", "NA", None]
    assert frame["label"].tolist() == ["pos", "1", "neg"]
    assert frame["confidence"].tolist() == [None, "0.5", None]
    assert json.loads(frame["messages"].iloc[2]) == [{"role": "user", "content": "x"}]


def test_parquet(tmp_path):
    path = tmp_path / "a.parquet"
    table = pa.table(
        {
            "text": ["hello", "NA", None],
            "label": pa.array([0, 1, 2], pa.int64()),
            "tags": [["a", "b"], [], None],
        }
    )
    pq.write_table(table, path)
    frame = read(path)
    assert frame[ROW_COLUMN].tolist() == [1, 2, 3]
    assert frame["text"].tolist() == ["hello", "NA", None]
    assert frame["label"].tolist() == ["0", "1", "2"]
    assert [None if v is None else json.loads(v) for v in frame["tags"]] == [["a", "b"], [], None]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_na_text_stays_na(tmp_path, suffix):
    path = tmp_path / f"na{suffix}"
    records = [{"text": t, "label": "x"} for t in ["NA", "N/A", "null", "NaN", "None"]]
    if suffix == ".csv":
        pd.DataFrame(records).to_csv(path, index=False)
    elif suffix == ".jsonl":
        write_jsonl(path, records)
    else:
        pq.write_table(pa.Table.from_pylist(records), path)
    assert read(path)["text"].tolist() == ["NA", "N/A", "null", "NaN", "None"]


def test_parquet_int_column_with_null_keeps_integer_text(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": pa.array([1, None, 3])}), path)
    assert read(path)["label"].tolist() == ["1", None, "3"]


@pytest.mark.parametrize("char", ["\u2028", "\x85"])
def test_jsonl_with_unicode_line_separator_inside_string(tmp_path, char):
    path = tmp_path / "a.jsonl"
    write_jsonl(path, [{"text": f"one{char}two", "label": "x"}], ensure_ascii=False)
    assert read(path)["text"].tolist() == [f"one{char}two"]


def test_latin1_file_read_as_utf8_names_file_encoding_and_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nok,pos\ncafé,neg\n".encode("latin-1"))
    with pytest.raises(ReadError) as info:
        read(path)
    message = str(info.value)
    assert str(path) in message
    assert "utf-8" in message
    assert "line 3" in message
    assert "latin-1" in message  # the hint
    assert read(path, encoding="latin-1")["text"].tolist() == ["ok", "café"]


def test_unknown_encoding(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("text,label\na,b\n", encoding="utf-8")
    with pytest.raises(ReadError, match="unknown encoding 'klingon'"):
        read(path, encoding="klingon")


def test_malformed_jsonl_names_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c",\n', encoding="utf-8")
    with pytest.raises(ReadError) as info:
        read(path)
    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message
    assert "invalid JSON" in message


def test_jsonl_non_object_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n["not", "an", "object"]\n', encoding="utf-8")
    with pytest.raises(ReadError, match=r"line 2: expected a JSON object"):
        read(path)


def test_malformed_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('text,label\nfine,pos\n"unterminated,neg\n', encoding="utf-8")
    with pytest.raises(ReadError, match="malformed CSV") as info:
        read(path)
    assert str(path) in str(info.value)


def test_csv_first_row_with_extra_field_is_an_error(tmp_path):
    path = tmp_path / "shifted.csv"
    path.write_text("text,label\nhello, world,pos\nfine day,neg\n", encoding="utf-8")
    with pytest.raises(ReadError) as info:
        read(path)
    assert str(path) in str(info.value)


def test_truncated_parquet_names_file(tmp_path):
    path = tmp_path / "cut.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(200)], "label": ["x"] * 200}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReadError) as info:
        read(path)
    message = str(info.value)
    assert str(path) in message
    assert "Parquet" in message


def test_missing_file(tmp_path):
    path = tmp_path / "gone.csv"
    with pytest.raises(ReadError, match="does not exist") as info:
        read(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_csv_gives_zero_rows(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content, encoding="utf-8")
    frame = read(path)
    assert len(frame) == 0
    assert ROW_COLUMN in frame.columns


def test_header_only_csv(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("text,label\n", encoding="utf-8")
    frame = read(path)
    assert len(frame) == 0
    assert list(frame.columns) == [ROW_COLUMN, "text", "label"]
    assert schema_problems(frame, "classification", MAPPING) == ["the file has no rows"]


# --- schema_problems / required_columns ---------------------------------------------------


def test_schema_problems_missing_column_and_no_rows():
    frame = pd.DataFrame({ROW_COLUMN: pd.Series([], dtype=int), "text": []})
    assert schema_problems(frame, "classification", MAPPING) == [
        "missing column 'label' (the recipe's 'label')",
        "the file has no rows",
    ]


def test_schema_problems_ok_frame():
    frame = pd.DataFrame({ROW_COLUMN: [1], "tweet": ["hi"], "sentiment": ["pos"]})
    mapping = ColumnMapping(text="tweet", label="sentiment")
    assert schema_problems(frame, "classification", mapping) == []
    assert schema_problems(frame, "classification", MAPPING) == [
        "missing column 'text' (the recipe's 'text')",
        "missing column 'label' (the recipe's 'label')",
    ]


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("classification", {"text": "text", "label": "label"}),
        ("instruction", {"prompt": "prompt", "response": "response"}),
        ("chat", {"messages": "messages"}),
    ],
)
def test_required_columns(task, expected):
    assert required_columns(task, MAPPING) == expected


def test_required_columns_unmapped_field():
    with pytest.raises(ReadError, match=r"no column for required fields \['label'\]"):
        required_columns("classification", ColumnMapping(label=None))
