"""The Dagster UI in a real browser: the asset graph, and a materialization launched from it.

Headless Debian Chromium (`make test` installs it when missing) driven by Playwright against
`dagster dev` on a free loopback port. Screenshots go to `test-output/browser/` (or
`$FT_TEST_OUTPUT/browser/`). Deselect locally with `PYTEST_ARGS='-m "not browser"'`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import dagster as dg
import pytest
from playwright.sync_api import expect

from ft_pipeline.lib.state.paths import PROJECT_ROOT
from ft_pipeline_tests.conftest import fixture_rows, write_csv, write_recipe
from ft_pipeline_tests.dagster_dev import DagsterDev, dagster_dev, open_instance

# One `dagster dev` at a time: the live tests share one xdist worker (conftest).
pytestmark = [pytest.mark.live, pytest.mark.browser, pytest.mark.xdist_group("live")]

CHROMIUM = Path(os.environ.get("FT_CHROMIUM", "/usr/bin/chromium"))
ASSETS = {
    "data": ["raw_data", "cleaned_data"],
    "training": ["tokenized_dataset", "fine_tuned_adapter"],
    "evaluation": ["evaluation_report"],
    "deployment": ["deployed_model"],
}
SOURCE = "file:data/corpus.csv"


@pytest.fixture
def output_dir() -> Path:
    root = Path(os.environ.get("FT_TEST_OUTPUT") or PROJECT_ROOT / "test-output")
    folder = root / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser_page():
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: `make test` installs Debian's chromium "
            "(apt-get install chromium); deselect with PYTEST_ARGS='-m \"not browser\"'"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            browser.close()


@pytest.fixture
def server(tmp_path: Path, tiny_model_dir: Path):
    rows = fixture_rows(40)
    rows.append({"text": "the seat was fine i guess", "label": "meh", "confidence": "0.9"})
    write_csv(tmp_path / "data" / "corpus.csv", rows)
    recipe = write_recipe(
        tmp_path,
        tiny_model_dir,
        ["data/corpus.csv"],
        # The sensor registers the recipe's source quickly; automation stays out of the way.
        automation={"landing_interval_s": 2, "automation_interval_s": 3600},
    )
    with dagster_dev(tmp_path, recipe) as running:
        yield running


def test_asset_graph_shows_six_assets_and_launches_data_materialization(
    server: DagsterDev, browser_page, output_dir: Path
):
    page = browser_page
    instance = open_instance(server)
    server.wait_for(
        "the sensor to register the recipe's source",
        lambda: SOURCE in instance.get_dynamic_partitions("source_files"),
        timeout=60,
    )

    # The instance turns off the first-visit "Join the Dagster community" dialog (dagster.yaml
    # `nux`), which would otherwise cover the page and take the first click.
    assert server.graphql("{ shouldShowNux }")["data"]["shouldShowNux"] is False

    page.goto(f"{server.url}/asset-groups")
    page.get_by_role("button", name="Materialize all").wait_for()
    page.locator("button:has([aria-label=settings])").last.click()  # the graph's settings
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.keyboard.press("Escape")
    graph = page.locator("svg foreignObject")
    for group, assets in ASSETS.items():
        expect(graph.get_by_text(group, exact=True).first).to_be_visible()
        for asset in assets:
            graph.get_by_text(asset, exact=True).wait_for(state="visible")
    page.screenshot(path=output_dir / "asset_graph.png")

    graph.get_by_text("raw_data", exact=True).click()
    graph.get_by_text("cleaned_data", exact=True).click(modifiers=["Shift"])
    page.get_by_role("button", name="Materialize selected (2)").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Launch runs to materialize 2 assets").wait_for()
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_text(SOURCE).filter(visible=True).click()
    page.keyboard.press("Escape")  # closes the partition picker, not the dialog
    dialog.get_by_role("button", name="Launch 1 run").click()
    toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    short_id = toast.inner_text().split()[-1]

    page.get_by_role("link", name="View", exact=True).click()
    page.wait_for_url(re.compile(rf"/runs/{short_id}"))
    page.get_by_text("Success", exact=True).first.wait_for(timeout=240_000)
    page.screenshot(path=output_dir / "materialize_run.png")

    [run] = [r for r in instance.get_runs() if r.run_id.startswith(short_id)]
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/from_ui"] == "true" and run.tags["dagster/partition"] == SOURCE
    for asset in ("raw_data", "cleaned_data"):
        assert SOURCE in instance.get_materialized_partitions(dg.AssetKey(asset)), asset
    assert (output_dir / "asset_graph.png").stat().st_size > 10_000

    # The cleaned partition's quarantine shows as metadata on the asset's events.
    page.goto(f"{server.url}/assets/cleaned_data?view=events")
    for key in ("rows_quarantined", "quarantine_reasons", "quarantine_preview"):
        page.get_by_text(key, exact=True).first.wait_for()
    page.get_by_text("unknown_label").first.wait_for()  # the reasons table names the row's fault
    page.screenshot(path=output_dir / "cleaned_data_events.png")
