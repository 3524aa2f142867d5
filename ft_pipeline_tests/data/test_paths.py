"""Paths cannot escape their roots: directories and symlinks in the landing folder, partition
keys that climb out of it, and recipe source paths outside `data.source_root`."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from ft_pipeline.lib.data.sources import discover
from ft_pipeline_tests.conftest import fixture_rows, write_csv
from ft_pipeline_tests.reliability_input import GOOD, Site

ROWS = fixture_rows(4, seed=12)


@pytest.fixture
def site(tmp_path: Path):
    with dg.DagsterInstance.ephemeral() as instance:
        yield Site(tmp_path / "project", instance)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A readable CSV outside both the landing folder and the recipe's folder."""
    return write_csv(tmp_path / "outside" / "secret.csv", ROWS)


def _not_read(site: Site, key: str) -> None:
    assert not site.state.paths().raw(key).exists(), f"{key} was read"


def test_directory_in_the_landing_folder_is_skipped_with_a_reason(site: Site):
    folder = site.incoming / "folder.csv"
    folder.mkdir()
    requested, skipped = site.requested()
    assert requested == [GOOD]
    assert "ignored: folder.csv is a directory, not a data file" in skipped
    message = site.materialize("incoming:folder.csv").error()  # e.g. registered from the UI
    assert f"partition 'incoming:folder.csv': {folder} is a directory, not a data file" in message
    _not_read(site, "incoming:folder.csv")
    site.good()


def test_symlink_to_a_file_outside_the_landing_folder_is_refused(site: Site, secret: Path):
    link = site.incoming / "stolen.csv"
    link.symlink_to(secret)
    requested, skipped = site.requested()
    assert requested == [GOOD]
    refused = f"is a symlink to {secret}, outside {site.incoming}; refusing to read it"
    assert f"stolen.csv {refused}" in skipped
    recipe = site.recipe.load()
    assert [s.key for s in discover(recipe, site.root, site.incoming)] == [GOOD]  # the CLI's list
    message = site.materialize("incoming:stolen.csv").error()
    assert f"partition 'incoming:stolen.csv': {link} {refused}" in message
    _not_read(site, "incoming:stolen.csv")
    site.good()


def test_symlink_to_a_file_inside_the_landing_folder_is_read(site: Site):
    (site.incoming / "latest.csv").symlink_to(site.incoming / "good.csv")
    requested, _ = site.requested()
    assert requested == [GOOD, "incoming:latest.csv"]
    site.materialize("incoming:latest.csv").accounted(len(fixture_rows(10)))
    site.good()


@pytest.mark.parametrize("name", ["../outside/secret.csv", "sub/secret.csv", ".."])
def test_partition_key_that_climbs_out_of_the_landing_folder_is_refused(
    site: Site, secret: Path, name: str
):
    (site.incoming / "sub").symlink_to(secret.parent)
    key = f"incoming:{name}"
    message = site.materialize(key).error()
    assert f"partition {key!r}: {name!r} is not a file name directly in the landing" in message
    _not_read(site, key)
    site.good()


def _with_sources(tmp_path: Path, instance: dg.DagsterInstance, *sources: str, **data) -> Site:
    project = tmp_path / "project"
    write_csv(project / "data" / "good.csv", ROWS)
    return Site(project, instance, data={"sources": ["data/good.csv", *sources], **data})


@pytest.mark.parametrize(
    "source",
    ["../outside/secret.csv", "data/link.csv", "{secret}"],
    ids=["dot-dot", "symlink-out", "absolute"],
)
def test_recipe_source_outside_the_recipe_folder_is_refused(
    tmp_path: Path, secret: Path, source: str
):
    source = source.format(secret=secret)
    with dg.DagsterInstance.ephemeral() as instance:
        site = _with_sources(tmp_path, instance, source)
        (site.root / "data" / "link.csv").symlink_to(secret)
        key = f"file:{source}"
        message = site.materialize(key).error()
        assert f"partition {key!r}: {secret} is outside the recipe's source root" in message
        assert "data.source_root" in message
        _not_read(site, key)
        site.materialize("file:data/good.csv").accounted(len(ROWS))


def test_recipe_source_root_can_be_widened_explicitly(tmp_path: Path, secret: Path):
    with dg.DagsterInstance.ephemeral() as instance:
        site = _with_sources(tmp_path, instance, "../outside/secret.csv", source_root="..")
        site.materialize("file:../outside/secret.csv").accounted(len(ROWS))
        site.materialize("file:data/good.csv").accounted(len(ROWS))


def test_recipe_source_that_is_a_directory_is_refused(tmp_path: Path):
    with dg.DagsterInstance.ephemeral() as instance:
        site = _with_sources(tmp_path, instance, "data/folder.csv")
        folder = site.root / "data" / "folder.csv"
        folder.mkdir()
        message = site.materialize("file:data/folder.csv").error()
        assert f"'file:data/folder.csv': {folder} is a directory, not a data file" in message
        site.materialize("file:data/good.csv").accounted(len(ROWS))


def test_bad_recipe_source_fails_only_its_own_partition(tmp_path: Path):
    with dg.DagsterInstance.ephemeral() as instance:
        site = _with_sources(tmp_path, instance, "data/sheet.xlsx", "data/missing.csv")
        (site.root / "data" / "sheet.xlsx").write_bytes(b"PK\x03\x04")
        requested, _ = site.requested()  # the sensor still ingests the landing folder
        assert requested == [GOOD]
        message = site.materialize("file:data/sheet.xlsx").error()
        assert "'file:data/sheet.xlsx': " in message and "unsupported file type '.xlsx'" in message
        message = site.materialize("file:data/missing.csv").error()
        assert f"{site.root / 'data' / 'missing.csv'} does not exist" in message
        site.materialize("file:data/good.csv").accounted(len(ROWS))
        site.good()
