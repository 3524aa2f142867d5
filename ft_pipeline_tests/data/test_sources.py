"""Source discovery and partition keys: the landing folder, recipe paths, resolve()."""

from __future__ import annotations

import pytest

from ft_pipeline.lib.data.readers import read_source
from ft_pipeline.lib.data.sources import SourceError, detect_format, discover, is_ignored, resolve
from ft_pipeline.recipe import parse_recipe


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        ("data.csv", False),
        ("data.jsonl", False),
        ("notes.txt", False),
        (".data.csv", True),
        ("_data.csv", True),
        ("data.csv.tmp", True),
        ("data.csv.part", True),
        ("data.csv.partial", True),
        ("data.csv.crdownload", True),
        (".DS_Store", True),
    ],
)
def test_is_ignored(name, ignored):
    assert is_ignored(name) is ignored


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.csv", "csv"),
        ("a.TSV", "csv"),
        ("a.jsonl", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.json", "jsonl"),
        ("a.parquet", "parquet"),
        ("a.pq", "parquet"),
    ],
)
def test_detect_format(tmp_path, name, fmt):
    assert detect_format(tmp_path / name) == fmt


def test_detect_format_declared_and_unsupported(tmp_path):
    assert detect_format(tmp_path / "a.txt", "csv") == "csv"
    with pytest.raises(SourceError, match=r"unsupported file type '\.txt'"):
        detect_format(tmp_path / "a.txt")


RECIPE = parse_recipe({"name": "t", "labels": ["a", "b"]})


def make_landing(tmp_path, names):
    landing = tmp_path / "incoming"
    landing.mkdir()
    for name in names:
        (landing / name).write_text("text,label\nhi,a\n", encoding="utf-8")
    return landing


def test_discover_landing_folder(tmp_path):
    landing = make_landing(
        tmp_path,
        [
            "b.csv",
            "a.jsonl",
            "c.parquet",
            "d.tsv",
            ".hidden.csv",
            "_writing.csv",
            "e.csv.tmp",
            "f.csv.part",
            "notes.txt",
            "README",
        ],
    )
    (landing / "folder.csv").mkdir()
    found = discover(RECIPE, tmp_path, landing)
    assert [s.key for s in found] == [
        "incoming:a.jsonl",
        "incoming:b.csv",
        "incoming:c.parquet",
        "incoming:d.tsv",
    ]
    assert [s.format for s in found] == ["jsonl", "csv", "parquet", "csv"]
    assert all(s.encoding == "utf-8" and s.columns == RECIPE.data.columns for s in found)
    assert found[1].path == landing / "b.csv"


def test_discover_recipe_sources(tmp_path):
    recipe = parse_recipe(
        {
            "name": "t",
            "labels": ["a", "b"],
            "data": {
                "encoding": "latin-1",
                "sources": [
                    "data/a.csv",
                    {
                        "path": "data/b.txt",
                        "format": "jsonl",
                        "encoding": "utf-16",
                        "columns": {"text": "body"},
                    },
                ],
            },
        }
    )
    found = discover(recipe, tmp_path, tmp_path / "no-landing")
    assert [s.key for s in found] == ["file:data/a.csv", "file:data/b.txt"]
    a, b = found
    assert a.path == (tmp_path / "data" / "a.csv").resolve()
    assert (a.format, a.encoding, a.columns) == ("csv", "latin-1", recipe.data.columns)
    assert (b.format, b.encoding, b.columns.text) == ("jsonl", "utf-16", "body")


def test_discover_recipe_source_with_unsupported_suffix(tmp_path):
    recipe = parse_recipe({"name": "t", "labels": ["a", "b"], "data": {"sources": ["x.xlsx"]}})
    with pytest.raises(SourceError, match="unsupported file type"):
        discover(recipe, tmp_path, tmp_path)


def test_resolve_incoming(tmp_path):
    landing = make_landing(tmp_path, ["b.csv"])
    source = resolve("incoming:b.csv", RECIPE, tmp_path, landing)
    assert source == discover(RECIPE, tmp_path, landing)[0]
    assert read_source(source)["text"].tolist() == ["hi"]


def test_resolve_recipe_file(tmp_path):
    recipe = parse_recipe({"name": "t", "labels": ["a", "b"], "data": {"sources": ["a.csv"]}})
    (tmp_path / "a.csv").write_text("text,label\nx,a\n", encoding="utf-8")
    source = resolve("file:a.csv", recipe, tmp_path, tmp_path / "incoming")
    assert (source.key, source.path, source.format) == (
        "file:a.csv",
        (tmp_path / "a.csv").resolve(),
        "csv",
    )


def test_resolve_recipe_file_that_does_not_exist(tmp_path):
    recipe = parse_recipe({"name": "t", "labels": ["a", "b"], "data": {"sources": ["a.csv"]}})
    with pytest.raises(SourceError, match="does not exist") as info:
        resolve("file:a.csv", recipe, tmp_path, tmp_path)
    assert "'file:a.csv'" in str(info.value)


@pytest.mark.parametrize("key", ["file:other.csv", "s3://bucket/x.csv", "whatever"])
def test_resolve_unknown_key(tmp_path, key):
    with pytest.raises(SourceError) as info:
        resolve(key, RECIPE, tmp_path, tmp_path)
    message = str(info.value)
    assert repr(key) in message
    assert "not a source of recipe 't'" in message


def test_resolve_vanished_incoming_file(tmp_path):
    landing = make_landing(tmp_path, ["b.csv"])
    (landing / "b.csv").unlink()
    with pytest.raises(SourceError, match="no longer exists") as info:
        resolve("incoming:b.csv", RECIPE, tmp_path, landing)
    assert "'incoming:b.csv'" in str(info.value)
