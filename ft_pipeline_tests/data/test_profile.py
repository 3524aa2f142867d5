"""Profiling a data file for `ft-pipeline init`: sniffing, label folding, column proposals."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ft_pipeline.lib.data.label_folding import fold_labels
from ft_pipeline.lib.data.profile import ProfileError, column_stats, sniff, sniff_encoding
from ft_pipeline.lib.data.proposal import propose
from ft_pipeline.lib.data.readers import read_source
from ft_pipeline.lib.data.sources import Source
from ft_pipeline.recipe import ColumnMapping

ROWS = [
    {"label": ["pos", "neg", "neu"][i % 3], "text": f"a café review, number {i}; déjà vu"}
    for i in range(30)
]


@pytest.mark.parametrize(
    ("suffix", "sep", "encoding", "expected"),
    [
        pytest.param(".csv", ",", "utf-8", "utf-8", id="csv-utf8"),
        pytest.param(".csv", ";", "latin-1", "latin-1", id="semicolon-latin1"),
        pytest.param(".csv", "\t", "utf-8-sig", "utf-8", id="tab-in-a-csv-with-bom"),
        pytest.param(".tsv", "\t", "cp1252", "latin-1", id="tsv-cp1252"),
        pytest.param(".txt", "|", "utf-8", "utf-8", id="pipe-txt"),
    ],
)
def test_sniff_reads_the_file_as_the_pipeline_reader_will(
    tmp_path, suffix, sep, encoding, expected
):
    path = tmp_path / f"data{suffix}"
    pd.DataFrame(ROWS).to_csv(path, sep=sep, index=False, encoding=encoding)
    sniffed = sniff(path)
    assert (sniffed.format, sniffed.encoding) == ("csv", expected)
    assert sniffed.delimiter == sep
    assert sniffed.columns == ["label", "text"]
    assert sniffed.frame["text"].tolist() == [r["text"] for r in ROWS]
    # The settings it found read the same rows through the pipeline's reader.
    again = read_source(
        Source("k", path, sniffed.format, sniffed.encoding, ColumnMapping(), sniffed.delimiter)
    )
    assert again.equals(sniffed.frame)


def test_sniff_tells_jsonl_and_parquet_by_content(tmp_path):
    jsonl = tmp_path / "rows.data"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    parquet = tmp_path / "rows.bin"
    pd.DataFrame(ROWS).to_parquet(parquet)
    assert sniff(jsonl).format == "jsonl" and sniff(parquet).format == "parquet"
    assert "from the content" in sniff(jsonl).notes[0]
    assert len(sniff(parquet).frame) == len(ROWS)


def test_cp1252_quotes_pick_cp1252():
    raw = "“quoted” text for 5 €, café".encode("cp1252") * 20
    encoding, why = sniff_encoding(raw)
    assert encoding == "cp1252" and "not valid UTF-8" in why


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "file does not exist", id="missing"),
        pytest.param(b"", "the file is empty", id="empty"),
        pytest.param(b"text,label\n", "a header but no rows", id="header-only"),
        pytest.param(b'[{"text": "a"}]\n', "not JSON lines", id="json-array"),
    ],
)
def test_unusable_files_say_why(tmp_path, content, message):
    path = tmp_path / "data.jsonl" if content and content.startswith(b"[") else tmp_path / "d.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ProfileError, match=message) as err:
        sniff(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("values", "labels", "aliases"),
    [
        pytest.param(
            ["tech"] * 9 + ["Tech"] * 2 + [" tech  "] + ["sport"] * 8,
            ["tech", "sport"],
            {"Tech": "tech"},
            id="case-and-spacing",
        ),
        pytest.param(
            ["sport"] * 9 + ["Sports"] * 2 + ["sci-fi"] * 5 + ["scifi"],
            ["sport", "sci-fi"],
            {"Sports": "sport", "scifi": "sci-fi"},
            id="plural-and-punctuation",
        ),
        pytest.param(
            ["technology"] * 10 + ["tech"] * 2 + ["health"] * 9,
            ["technology", "health"],
            {"tech": "technology"},
            id="rare-prefix",
        ),
        pytest.param(
            ["pos"] * 10 + ["positive"] * 9 + ["neg"] * 5,
            ["pos", "positive", "neg"],
            {},
            id="common-prefix-kept-apart",
        ),
    ],
)
def test_fold_labels(values, labels, aliases):
    found = fold_labels(values)
    assert found.labels == labels
    assert found.aliases == aliases
    assert set(found.why) == set(aliases)
    assert sum(found.counts.values()) == len(values)


def test_fold_labels_says_what_differs_even_on_a_tie():
    found = fold_labels(["Tech"] * 5 + ["tech"] * 5 + ["sports"] * 2 + ["sport"] * 9)
    assert found.aliases == {"Tech": "tech", "sports": "sport"}
    assert found.why == {"Tech": "case or spacing", "sports": "plural"}


def test_fold_labels_reports_rare_missing_and_kept_apart():
    found = fold_labels(["pos"] * 50 + ["positive"] * 45 + ["neg"] * 2 + [None, " "])
    assert found.kept_apart == [("pos", "positive")]
    assert found.missing == 2
    assert set(found.rare(0.05)) == {"neg"}


def _stats(rows: list[dict]) -> tuple[dict, int]:
    frame = pd.DataFrame(rows).astype(object)
    return column_stats(frame), len(frame)


def test_propose_classification_text_and_label():
    rows = [
        {"id": str(i), "category": "ab"[i % 2], "body": "words " * (20 + i), "title": f"t{i}"}
        for i in range(40)
    ]
    proposal = propose(*_stats(rows))
    assert proposal.task == "classification"
    assert (proposal.columns["text"], proposal.columns["label"]) == ("body", "category")
    assert "id" in proposal.unused


@pytest.mark.parametrize(
    ("prompt", "response"),
    [("question", "answer"), ("instruction", "output"), ("input", "output"), ("Prompt", "Reply")],
)
def test_propose_instruction_by_names(prompt, response):
    rows = [{prompt: f"ask {i} " * 5, response: f"say {i} " * 9} for i in range(30)]
    proposal = propose(*_stats(rows))
    assert proposal.task == "instruction"
    assert (proposal.columns["prompt"], proposal.columns["response"]) == (prompt, response)


def test_propose_chat_and_sharegpt():
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    proposal = propose(*_stats([{"messages": json.dumps(turns), "n": "1"}] * 5))
    assert proposal.task == "chat" and proposal.columns["messages"] == "messages"
    share = [{"from": "human", "value": "hi"}]
    with pytest.raises(ProfileError, match="ShareGPT"):
        propose(
            *_stats([{"conversations": json.dumps(share), "n": str(i)} for i in range(5)]), "chat"
        )


def test_propose_errors_name_the_columns_and_what_to_pass():
    rows = [{"a": f"first text {i}", "b": f"second text {i}"} for i in range(30)]
    with pytest.raises(ProfileError, match="no usable label column") as err:
        propose(*_stats(rows), "classification")
    assert "'a' (30 distinct" in str(err.value) and "--task instruction" in str(err.value)
    with pytest.raises(ProfileError, match="one column"):
        propose(*_stats([{"text": f"t {i}"} for i in range(5)]))
    by_position = propose(*_stats(rows), "instruction")
    assert (by_position.columns["prompt"], by_position.columns["response"]) == ("a", "b")
