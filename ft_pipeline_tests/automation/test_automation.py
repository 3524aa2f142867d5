"""Declarative automation and the retraining threshold, evaluated against a real instance."""

from __future__ import annotations

import dagster as dg
import pytest

from ft_pipeline.definitions import defs
from ft_pipeline_tests.conftest import fixture_rows, write_csv
from ft_pipeline_tests.training.test_assets import (
    KEY,
    MODEL,
    ModelProject,
    _checks,
    _project,
    model_project,
)


@pytest.fixture
def project(tmp_path, tiny_model_dir):
    _, recipe = _project(tmp_path, tiny_model_dir, automation={"min_new_rows": 50})
    with model_project(tmp_path, recipe, prepare=False) as p:
        p.instance.add_dynamic_partitions("source_files", [KEY])
        yield p


ASSETS = ("tokenized_dataset", "fine_tuned_adapter", "evaluation_report", "deployed_model")


def _requested(project: ModelProject, cursor=None):
    """Assets the automation sensor would request now, and the cursor for the next tick."""
    result = dg.evaluate_automation_conditions(defs=defs, instance=project.instance, cursor=cursor)
    names = {a for a in ASSETS if result.get_num_requested(dg.AssetKey(a))}
    return names, result.cursor


def test_clean_data_triggers_tokenize_then_training_once_checks_pass(project: ModelProject):
    requested, cursor = _requested(project)  # the first tick only records where we are
    assert not requested & {"tokenized_dataset", "fine_tuned_adapter"}
    assert project.materialize(dg.AssetSelection.assets("raw_data", "cleaned_data"), KEY).success
    requested, cursor = _requested(project, cursor)
    assert "tokenized_dataset" in requested and "fine_tuned_adapter" not in requested

    assert project.materialize(dg.AssetSelection.assets("tokenized_dataset")).success
    requested, cursor = _requested(project, cursor)
    assert "fine_tuned_adapter" in requested and "tokenized_dataset" not in requested


def test_a_tiny_new_file_does_not_trigger_training(project: ModelProject):
    data = dg.AssetSelection.assets("raw_data", "cleaned_data")
    assert project.materialize(data, KEY).success
    assert project.materialize(dg.AssetSelection.assets("tokenized_dataset")).success
    assert project.materialize(MODEL).success

    _, cursor = _requested(project)
    write_csv(project.state.paths().incoming / "small.csv", fixture_rows(3, seed=9))
    project.instance.add_dynamic_partitions("source_files", ["incoming:small.csv"])
    assert project.materialize(data, "incoming:small.csv").success
    result = project.materialize(dg.AssetSelection.assets("tokenized_dataset"))
    assert result.success  # a WARN check does not fail the run ...
    evaluation = {e.check_name: e for e in result.get_asset_check_evaluations()}
    check = evaluation["tokenized_dataset_enough_new_rows"]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    assert "only 9 new rows" in check.description  # 3 rows per label
    requested, _ = _requested(project, cursor)
    assert "fine_tuned_adapter" not in requested  # ... but automation waits for more rows
    assert _checks(result)["tokenized_dataset_no_leakage"]
