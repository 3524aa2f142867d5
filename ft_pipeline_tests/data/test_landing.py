"""The landing-folder scan behind the sensor (ft_pipeline.lib.data.landing), without Dagster."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ft_pipeline.lib.data import landing
from ft_pipeline.lib.state.paths import file_sha256
from ft_pipeline_tests.conftest import fixture_rows, write_csv


def test_scan_reports_new_files_with_hash_and_key(tmp_path: Path):
    write_csv(tmp_path / "a.csv", fixture_rows(1))
    (tmp_path / "b.parquet").write_bytes(b"PAR1")
    result = landing.scan(tmp_path, {})
    assert [f.key for f in result.changed] == ["incoming:a.csv", "incoming:b.parquet"]
    assert result.changed[0].sha256 == file_sha256(tmp_path / "a.csv")
    assert result.checked == 2
    entry = result.cursor["a.csv"]
    assert set(entry) == {"size", "mtime_ns", "sha256"}
    assert entry["size"] == (tmp_path / "a.csv").stat().st_size
    assert json.loads(landing.dump_cursor(result.cursor)) == result.cursor


def test_scan_does_not_rehash_an_unchanged_file(tmp_path: Path, monkeypatch):
    path = write_csv(tmp_path / "a.csv", fixture_rows(1))
    first = landing.scan(tmp_path, {})
    hashed: list[Path] = []
    monkeypatch.setattr(landing, "file_sha256", lambda p: hashed.append(p) or "x" * 64)
    again = landing.scan(tmp_path, first.cursor)
    assert again.changed == [] and hashed == []
    os.utime(path, ns=(0, path.stat().st_mtime_ns + 1))
    touched = landing.scan(tmp_path, first.cursor)
    assert hashed == [path]
    assert [f.sha256 for f in touched.changed] == ["x" * 64]  # the (fake) bytes changed


def test_scan_touch_is_not_a_change_but_new_bytes_are(tmp_path: Path):
    path = write_csv(tmp_path / "a.csv", fixture_rows(1))
    cursor = landing.scan(tmp_path, {}).cursor
    os.utime(path, ns=(0, 1_000_000_000))
    touched = landing.scan(tmp_path, cursor)
    assert touched.changed == []
    assert touched.cursor["a.csv"]["mtime_ns"] == 1_000_000_000
    path.write_text("text,label\nsomething else,positive\n")
    changed = landing.scan(tmp_path, touched.cursor)
    assert [f.sha256 for f in changed.changed] == [file_sha256(path)]


def test_scan_skips_ignored_unsupported_and_directories(tmp_path: Path):
    for name in [".x.csv", "_x.csv", "x.csv.tmp", "x.csv.part", "x.csv.crdownload", "x.txt"]:
        (tmp_path / name).write_text("a\n")
    (tmp_path / "sub.csv").mkdir()
    (tmp_path / "UPPER.CSV").write_text("a\n")
    result = landing.scan(tmp_path, {})
    assert [f.key for f in result.changed] == ["incoming:UPPER.CSV"]
    assert result.checked == 1


def test_scan_rejects_names_that_cannot_be_partition_keys(tmp_path: Path):
    (tmp_path / "a...b.csv").write_text("a\n")
    (tmp_path / "ok.csv").write_text("a\n")
    result = landing.scan(tmp_path, {})
    assert [f.key for f in result.changed] == ["incoming:ok.csv"]
    assert result.rejected == ["a...b.csv"]


def test_scan_drops_vanished_files(tmp_path: Path):
    path = write_csv(tmp_path / "a.csv", fixture_rows(1))
    cursor = landing.scan(tmp_path, {}).cursor
    path.unlink()
    result = landing.scan(tmp_path, cursor)
    assert result.cursor == {} and result.changed == [] and result.checked == 0


def test_scan_skips_a_file_that_fails_to_hash(tmp_path: Path, monkeypatch):
    write_csv(tmp_path / "a.csv", fixture_rows(1))
    write_csv(tmp_path / "b.csv", fixture_rows(1, seed=1))

    def flaky(path: Path) -> str:
        if path.name == "a.csv":
            raise FileNotFoundError(path)  # vanished between listing and hashing
        return file_sha256(path)

    monkeypatch.setattr(landing, "file_sha256", flaky)
    result = landing.scan(tmp_path, {})
    assert [f.key for f in result.changed] == ["incoming:b.csv"]
    assert result.unreadable == ["a.csv"]
    assert "a.csv" not in result.cursor  # retried next scan
    monkeypatch.setattr(landing, "file_sha256", file_sha256)
    retry = landing.scan(tmp_path, result.cursor)
    assert [f.key for f in retry.changed] == ["incoming:a.csv"]


def test_scan_keeps_the_old_entry_of_a_known_file_it_cannot_read(tmp_path: Path, monkeypatch):
    path = write_csv(tmp_path / "a.csv", fixture_rows(1))
    cursor = landing.scan(tmp_path, {}).cursor
    path.write_text("text,label\nnew bytes,positive\n")

    def denied(path: Path) -> str:
        raise PermissionError(path)

    monkeypatch.setattr(landing, "file_sha256", denied)
    result = landing.scan(tmp_path, cursor)
    assert result.changed == [] and result.unreadable == ["a.csv"]
    assert result.cursor == cursor


def test_scan_of_a_missing_folder(tmp_path: Path):
    result = landing.scan(tmp_path / "nope", {"a.csv": {"size": 1, "mtime_ns": 1, "sha256": "x"}})
    assert result.folder_missing and result.changed == [] and result.cursor == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, {}),
        ("", {}),
        ("not json", {}),
        ("[1, 2]", {}),
        (
            '{"a.csv": {"size": 1, "mtime_ns": 2, "sha256": "s"}, "b.csv": {"size": "1"}}',
            {"a.csv": {"size": 1, "mtime_ns": 2, "sha256": "s"}},
        ),
    ],
)
def test_parse_cursor_tolerates_bad_input(raw: str | None, expected: dict):
    assert landing.parse_cursor(raw) == expected
