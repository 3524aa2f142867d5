"""Every check, made to fail, says what it measured, the limit, the fix and where to look.

One tiny-model project goes through the pipeline; each check is then failed for real (bad
files, a one-sided join, or state tampered after the fact, which is the only way to fail
the defence-in-depth gates behind cleaning), re-run alone, and its failure read back the
way the UI and `ft-pipeline run` show it. A check added to the code location without a
case here fails `test_every_check_of_the_code_location_has_a_case`.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from datasets import load_from_disk

from ft_pipeline.definitions import defs
from ft_pipeline.defs.data.checks import gate_results
from ft_pipeline.defs.evaluation.experiment import COMPARISON, with_experiment
from ft_pipeline.defs.explained import FIELDS, failure_block
from ft_pipeline.lib.data.rendering import IGNORE_INDEX
from ft_pipeline.recipe import load_recipe
from ft_pipeline_tests.conftest import fixture_rows, write_csv
from ft_pipeline_tests.training.test_assets import (
    KEY,
    TRAIN_AND_EVALUATE,
    TRAINING,
    _project,
    model_project,
)

DATA = dg.AssetSelection.assets("raw_data", "cleaned_data")
EXPERIMENT = {"variants": [{"name": "slow", "training.learning_rate": 0.002}, {"name": "fast"}]}
# Each check -> (asset, the words its failure must hold besides the four fields).
CASES = {
    "raw_data_schema": ("raw_data", ["missing column 'label'", "data.columns"]),
    "cleaned_data_rows_accounted": ("cleaned_data", ["kept +"]),
    "cleaned_data_rows_kept": ("cleaned_data", ["were quarantined", "label_aliases"]),
    "cleaned_data_labels_in_set": ("cleaned_data", ["'label'", "'meh'"]),
    "cleaned_data_text_not_null": ("cleaned_data", ["'text'"]),
    "cleaned_data_text_length_in_bounds": ("cleaned_data", ["max_value=200"]),
    "cleaned_data_texts_unique": ("cleaned_data", ["'dedup_key'"]),
    "cleaned_data_confidence_in_range": ("cleaned_data", ["1.5"]),
    "tokenized_dataset_no_leakage": ("tokenized_dataset", ["more than one split"]),
    "tokenized_dataset_truncation_rate": (
        "tokenized_dataset",
        [
            "quality.max_truncation_rate",
            "model.max_length to about",
            "model.truncation: head_tail",
            "p50",
            "p99",
            "vs max_length 64",
        ],
    ),
    "tokenized_dataset_answer_tokens_present": ("tokenized_dataset", ["no answer token"]),
    "tokenized_dataset_label_balance": ("tokenized_dataset", ["positive 0.0%", "min_label_share"]),
    "tokenized_dataset_enough_new_rows": ("tokenized_dataset", ["automation.min_new_rows"]),
    "fine_tuned_adapter_converged": ("fine_tuned_adapter", ["learning_rate"]),
    "evaluation_report_promotion_gate": ("evaluation_report", ["min_f1_gain", "report.md"]),
}
# Checks only a recipe with `experiment:` has (its own code location).
EXPERIMENT_CHECKS = {"experiment_comparison_winner_passed_gate": ["did not pass", "variants"]}


def _only(asset: str, *names: str) -> dg.AssetSelection:
    return dg.AssetSelection.checks(*[dg.AssetCheckKey(dg.AssetKey(asset), n) for n in names])


def _rerun(project, asset: str, names: list[str], partition: str | None = None):
    """Run these checks of `asset` alone, over what the state folder holds now (the asset
    itself is not rematerialized, so tampered outputs stay as they are)."""
    [owner] = [a for a in defs.assets if dg.AssetKey(asset) in a.keys]
    job = dg.define_asset_job(
        "checks_alone", selection=_only(asset, *names), partitions_def=owner.partitions_def
    )
    resources = {
        **defs.resources,
        "state": project.state,
        "recipe": project.recipe,
        "mlflow": project.mlflow,
    }
    location = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, jobs=[job], resources=resources
    )
    return location.resolve_job_def("checks_alone").execute_in_process(
        partition_key=partition, instance=project.instance, raise_on_error=False
    )


def _failures(result) -> dict[str, object]:
    return {e.check_name: e for e in result.get_asset_check_evaluations() if not e.passed}


def assert_explained(evaluation, words: list[str]) -> None:
    """Failed, with all four fields, in the description and the metadata, and the words."""
    meta = {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}
    assert all(meta.get(k) for k in FIELDS), (evaluation.check_name, meta)
    for field in FIELDS:
        assert f"{field}: " in evaluation.description, evaluation.description
    block = failure_block(evaluation)
    assert block.startswith(f"check {evaluation.check_name}")
    for word in words:
        assert word in block, (evaluation.check_name, word, block)


@pytest.fixture(scope="module")
def failed(tmp_path_factory, tiny_model_dir) -> dict[str, object]:
    """check name -> its failed evaluation, each failed by one of the cases below."""
    root = tmp_path_factory.mktemp("checks")
    evaluation = {"min_f1_gain": 1.0, "bootstrap_samples": 200}  # no model gains a full point
    training = {**TRAINING, "max_steps": 6, "eval_every": 3}  # what it learns is not under test
    _, recipe = _project(root, tiny_model_dir, evaluation=evaluation, training=training)
    out: dict[str, object] = {}
    with model_project(root, recipe) as project:
        paths = project.state.paths()
        trained = project.materialize(TRAIN_AND_EVALUATE)
        out |= _failures(trained)
        out |= _bad_files(project, root)
        out |= _tampered_clean(project, paths)
        out |= _tampered_tokenized(project, paths)
        out |= _tampered_adapter(project, paths)
        out |= _one_sided_long_join(project, root)
    return out


def _bad_files(project, root: Path) -> dict:
    landing = project.state.paths().incoming
    write_csv(landing / "no_label.csv", [{"text": "a row with no label column"}])
    write_csv(landing / "all_meh.csv", [{**r, "label": "meh"} for r in fixture_rows(2, seed=4)])
    out = {}
    for name in ("no_label.csv", "all_meh.csv"):
        key = f"incoming:{name}"
        project.instance.add_dynamic_partitions("source_files", [key])
        out |= _failures(project.materialize(DATA, key))
    return out


def _tampered_clean(project, paths) -> dict:
    """Rows that cleaning would never keep, written into the clean partition afterwards."""
    clean = pd.read_parquet(paths.clean(KEY))
    bad = clean.head(5).copy()
    bad["label"] = ["meh", *bad["label"][1:]]
    bad["text"] = [bad["text"].iloc[0], None, "x" * 500, *bad["text"][3:]]
    bad["dedup_key"] = [*bad["dedup_key"][:3], clean["dedup_key"].iloc[10], *bad["dedup_key"][4:]]
    bad["confidence"] = [*bad["confidence"][:4], 1.5]
    pd.concat([clean, bad], ignore_index=True).to_parquet(paths.clean(KEY))
    # What cleaned_data_quality runs for the partition (Dagster cannot run a partitioned
    # check without its asset, which would clean the file again).
    results = gate_results(paths, KEY, project.recipe.load())
    return {r.check_name: r for r in results if not r.passed}


def _tampered_tokenized(project, paths) -> dict:
    """A test row that repeats a training text; training rows whose answers are all masked."""
    folder = paths.tokenized("fixture")
    dataset = load_from_disk(str(folder / "dataset"))
    train = dataset["train"].map(lambda r: {"labels": [IGNORE_INDEX] * len(r["labels"])})
    leaked = dataset["test"].map(
        lambda r, i: {"dedup_key": dataset["train"][0]["dedup_key"] if i == 0 else r["dedup_key"]},
        with_indices=True,
    )
    dataset["train"], dataset["test"] = train, leaked
    dataset.save_to_disk(str(folder / "tampered"))
    (folder / "dataset").rename(folder / "original")
    (folder / "tampered").rename(folder / "dataset")
    names = [  # one multi-asset check: all four run together
        "tokenized_dataset_no_leakage",
        "tokenized_dataset_truncation_rate",
        "tokenized_dataset_answer_tokens_present",
        "tokenized_dataset_label_balance",
    ]
    result = _rerun(project, "tokenized_dataset", names)
    (folder / "dataset").rename(folder / "tampered")
    (folder / "original").rename(folder / "dataset")
    return _failures(result)


def _tampered_adapter(project, paths) -> dict:
    [folder] = [p for p in paths.adapters("fixture").iterdir() if (p / "adapter.json").is_file()]
    info = json.loads((folder / "adapter.json").read_text())
    (folder / "adapter.json").write_text(json.dumps({**info, "best_val_loss": float("nan")}))
    return _failures(_rerun(project, "fine_tuned_adapter", ["fine_tuned_adapter_converged"]))


def _one_sided_long_join(project, root: Path) -> dict:
    """Only long negative texts: label balance and truncation fail on the joined set, and too
    few new rows for automation (a WARN)."""
    project.instance.delete_dynamic_partition("source_files", KEY)
    for name in ("no_label.csv", "all_meh.csv"):
        project.instance.delete_dynamic_partition("source_files", f"incoming:{name}")
    words = " ".join(["delayed again and the crew was rude"] * 4)
    rows = [
        {**r, "text": f"{r['text']} {words}"}
        for r in fixture_rows(3, seed=8)
        if r["label"] == "negative"
    ]
    write_csv(project.state.paths().incoming / "long.csv", rows)
    project.instance.add_dynamic_partitions("source_files", ["incoming:long.csv"])
    assert project.materialize(DATA, "incoming:long.csv").success
    return _failures(project.materialize(dg.AssetSelection.assets("tokenized_dataset")))


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_failed_check_says_what_it_measured_the_limit_and_the_fix(failed, name):
    assert name in failed, f"{name} did not fail; failed: {sorted(failed)}"
    assert_explained(failed[name], CASES[name][1])


def test_every_check_of_the_code_location_has_a_case(tmp_path, tiny_model_dir):
    names = {k.name for k in defs.get_repository_def().asset_graph.asset_check_keys}
    assert names == set(CASES)
    _, recipe = _project(tmp_path, tiny_model_dir, experiment=EXPERIMENT)
    _, checks = with_experiment([], list(defs.asset_checks), load_recipe(recipe))
    extra = {key.name for c in checks for key in c.check_keys} - names
    assert extra == set(EXPERIMENT_CHECKS)


def test_an_experiment_whose_winner_failed_its_gate_says_so(tmp_path, tiny_model_dir):
    _, recipe = _project(tmp_path, tiny_model_dir, experiment=EXPERIMENT)
    assets, checks = with_experiment(
        list(defs.assets), list(defs.asset_checks), load_recipe(recipe)
    )
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                COMPARISON, metadata={"winner": "fast", "winner_gate_passed": False}
            )
        )
        result = dg.materialize(
            [*assets, *checks],
            selection=_only("experiment_comparison", *EXPERIMENT_CHECKS),
            instance=instance,
            resources=defs.resources,
            raise_on_error=False,
        )
    [name] = EXPERIMENT_CHECKS
    assert_explained(_failures(result)[name], ["the winner fast", *EXPERIMENT_CHECKS[name]])
