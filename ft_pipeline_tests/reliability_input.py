"""Shared set-up of the bad-input reliability tests (data/test_bad_files.py,
data/test_bad_rows.py, data/test_paths.py, test_recipe_errors.py).

A `Site` is a temporary state folder, a recipe and an in-memory Dagster instance. A bad file
lands in the landing folder (or is named by the recipe) and `raw_data` + `cleaned_data` are
materialized for its partition through Dagster, exactly as the landing sensor's run would;
`good()` then materializes a good partition in the same instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd

from ft_pipeline.definitions import defs
from ft_pipeline.defs.automation import landing_sensor
from ft_pipeline.defs.partitions import source_partitions
from ft_pipeline.defs.resources import RecipeResource, StateResource
from ft_pipeline_tests.conftest import fixture_rows, write_csv, write_recipe

DATA = dg.AssetSelection.assets("raw_data", "cleaned_data")
GOOD = "incoming:good.csv"
GOOD_ROWS = fixture_rows(10, seed=3)


@dataclass
class Outcome:
    """What one raw_data + cleaned_data run of a partition did."""

    key: str
    result: dg.ExecuteInProcessResult
    site: Site

    @property
    def success(self) -> bool:
        return self.result.success

    def error(self) -> str:
        """The message of the failed step (raw_data's dg.Failure: file and reason)."""
        assert not self.success, f"{self.key} materialized"
        failures = [e for e in self.result.all_events if e.is_step_failure]
        assert failures, f"{self.key}: no step failed (a check failed instead?)"
        return failures[0].event_specific_data.error.message

    def failed_check(self, name: str) -> str:
        """The description of a failed (blocking) check; the run stops before cleaning."""
        [evaluation] = [
            e for e in self.result.get_asset_check_evaluations() if e.check_name == name
        ]
        assert not evaluation.passed, f"{name} passed"
        assert not self.result.asset_materializations_for_node("cleaned_data")
        return evaluation.description or ""

    def metadata(self, asset: str) -> dict:
        [event] = self.result.asset_materializations_for_node(asset)
        return {k: v.value for k, v in event.metadata.items()}

    def accounted(self, rows_in: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Assert rows in = kept + quarantined, each source row exactly once; return both."""
        assert self.success, self.result.all_events
        meta = self.metadata("cleaned_data")
        assert meta["rows_in"] == rows_in == meta["rows_kept"] + meta["rows_quarantined"]
        checks = {e.check_name: e.passed for e in self.result.get_asset_check_evaluations()}
        assert checks["cleaned_data_rows_accounted"], checks
        paths = self.site.state.paths()
        kept = pd.read_parquet(paths.clean(self.key))
        quarantined = pd.read_parquet(paths.quarantine(self.key))
        assert (len(kept), len(quarantined)) == (meta["rows_kept"], meta["rows_quarantined"])
        rows = sorted([*kept["source_row"], *quarantined["source_row"]])
        assert rows == list(range(1, rows_in + 1)), "a row was dropped or counted twice"
        return kept, quarantined


class Site:
    """A state folder + recipe + Dagster instance; materializes one partition at a time."""

    def __init__(self, root: Path, instance: dg.DagsterInstance, **recipe_overrides) -> None:
        self.root, self.instance = root, instance
        self.state = StateResource(root=str(root / "home"))
        self.incoming = self.state.paths().incoming
        self.recipe_file = write_recipe(root, root / "no-model", [], **recipe_overrides)
        self.recipe = RecipeResource(path=str(self.recipe_file))
        self.cursor: str | None = None
        write_csv(self.incoming / "good.csv", GOOD_ROWS)

    def land(self, name: str, content: bytes | str) -> Path:
        path = self.incoming / name
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
        return path

    def materialize(self, key: str) -> Outcome:
        if not self.instance.has_dynamic_partition(source_partitions.name, key):
            self.instance.add_dynamic_partitions(source_partitions.name, [key])
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks],
            selection=DATA,
            partition_key=key,
            instance=self.instance,
            resources={**defs.resources, "state": self.state, "recipe": self.recipe},
            raise_on_error=False,
        )
        return Outcome(key, result, self)

    def ingest(self, name: str, content: bytes | str | None = None) -> Outcome:
        """Land a file (unless it is there already) and materialize its partition."""
        if content is not None:
            self.land(name, content)
        return self.materialize(f"incoming:{name}")

    def good(self) -> None:
        """The good partition materializes in the same instance, all its rows accounted."""
        kept, _ = self.materialize(GOOD).accounted(len(GOOD_ROWS))
        assert len(kept) == len(GOOD_ROWS)

    def tick(self) -> dg.SensorResult:
        """One landing-sensor evaluation; keeps its cursor for the next, as the daemon does."""
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"state": self.state, "recipe": self.recipe},
        )
        result = landing_sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        return result

    def requested(self) -> tuple[list[str], str]:
        """Two sensor ticks: the partitions the first requests, and the second's skip reason
        (which lists the entries the scan ignored, with the reason)."""
        first = [r.partition_key or "" for r in self.tick().run_requests or []]
        second = self.tick()
        assert not second.run_requests and second.skip_reason is not None
        return first, second.skip_reason.skip_message or ""


def csv_text(rows: list[dict[str, str]]) -> str:
    return pd.DataFrame(rows).to_csv(index=False)


def jsonl_text(rows: list[dict[str, object]]) -> str:
    return pd.DataFrame(rows).to_json(orient="records", lines=True, force_ascii=False)
