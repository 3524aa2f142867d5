"""The data half through Dagster: definitions, materialization, bad input, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from datasets import load_from_disk

from ft_pipeline.definitions import defs
from ft_pipeline.defs.partitions import source_partitions
from ft_pipeline.defs.resources import RecipeResource, StateResource
from ft_pipeline.lib.data.rendering import IGNORE_INDEX
from ft_pipeline_tests.conftest import fixture_rows, write_csv, write_recipe

DATA = dg.AssetSelection.assets("raw_data", "cleaned_data")
TOKENIZED = dg.AssetSelection.assets("tokenized_dataset")


class Project:
    """A temporary state folder + recipe + Dagster instance for one test."""

    def __init__(self, root: Path, instance: dg.DagsterInstance, recipe: Path) -> None:
        self.root, self.instance = root, instance
        self.state = StateResource(root=str(root / "home"))
        self.recipe = RecipeResource(path=str(recipe))
        self.incoming = self.state.paths().incoming

    def add(self, *keys: str) -> None:
        self.instance.add_dynamic_partitions(source_partitions.name, list(keys))

    def materialize(self, selection, partition_key=None):
        return dg.materialize(
            [*defs.assets, *defs.asset_checks],
            selection=selection,
            partition_key=partition_key,
            instance=self.instance,
            resources={**defs.resources, "state": self.state, "recipe": self.recipe},
            raise_on_error=False,
        )


def _corpus_rows() -> list[dict[str, str]]:
    rows = fixture_rows(30)
    rows.append(dict(rows[0]))  # exact duplicate of row 1
    rows.append({**rows[5], "text": rows[5]["text"].upper()})  # duplicate up to case
    rows.append({"text": "the gate was cafÃ© friendly", "label": "POS", "confidence": "0.9"})
    rows.append({"text": "what even is this", "label": "meh", "confidence": "0.7"})
    rows.append({"text": "   ", "label": "neutral", "confidence": "0.8"})
    return rows


@pytest.fixture
def project(tmp_path: Path, tiny_model_dir: Path):
    corpus = write_csv(tmp_path / "data" / "corpus.csv", _corpus_rows())
    recipe = write_recipe(tmp_path, tiny_model_dir, [f"data/{corpus.name}"])
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield Project(tmp_path, instance, recipe)


def _metadata(result, asset: str) -> dict:
    [event] = result.asset_materializations_for_node(asset)
    return {k: v.value for k, v in event.metadata.items()}


def _checks(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_definitions_load_with_assets_checks_and_groups():
    graph = defs.get_repository_def().asset_graph
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {"raw_data", "cleaned_data", "tokenized_dataset"} <= keys
    checks = {k.name: graph.get_check_spec(k) for k in graph.asset_check_keys}
    assert checks["raw_data_schema"].blocking
    for name in ("rows_accounted", "rows_kept", "labels_in_set", "texts_unique"):
        assert checks[f"cleaned_data_{name}"].blocking
    assert checks["tokenized_dataset_no_leakage"].blocking
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups["raw_data"] == "data" and groups["tokenized_dataset"] == "training"
    repo = defs.get_repository_def()
    assert repo.has_sensor_def("landing_sensor") and repo.has_job("ingest_source_file")


def test_materialize_fixture_corpus_end_to_end(project: Project):
    key = "file:data/corpus.csv"
    project.add(key)
    result = project.materialize(DATA, key)
    assert result.success
    meta = _metadata(result, "cleaned_data")
    assert meta["rows_in"] == len(_corpus_rows()) == meta["rows_kept"] + meta["rows_quarantined"]
    assert all(_checks(result).values()), _checks(result)

    quarantine = pd.read_parquet(project.state.paths().quarantine(key))
    reasons = dict(zip(quarantine["source_row"], quarantine["reason"], strict=True))
    assert reasons[91] == "duplicate of row 1"
    assert reasons[92].startswith("duplicate of row 6")
    assert "unknown label 'meh'" in reasons[94]
    assert quarantine.set_index("source_row").loc[95, "reason_code"] == "empty_text"
    clean = pd.read_parquet(project.state.paths().clean(key))
    fixed = clean[clean["source_row"] == 93].iloc[0]
    assert fixed["text"] == "the gate was café friendly" and fixed["label"] == "positive"

    result = project.materialize(TOKENIZED)
    assert result.success
    checks = _checks(result)
    assert checks["tokenized_dataset_no_leakage"] and checks["tokenized_dataset_truncation_rate"]
    meta = _metadata(result, "tokenized_dataset")
    assert meta["rows_in"] == meta["dagster/row_count"] + meta["rows_dropped"]

    target = project.state.paths().tokenized("fixture")
    dataset = load_from_disk(str(target / "dataset"))
    assert sum(len(dataset[s]) for s in dataset) == meta["dagster/row_count"]
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(project.recipe.load().model.base)
    for row in dataset["train"]:
        answer = [t for t in row["labels"] if t != IGNORE_INDEX]
        assert tokenizer.decode(answer).strip() == f"{row['label']}<|im_end|>"
        n = len(answer)
        assert row["labels"][-n:] == row["input_ids"][-n:]
    texts = [set(dataset[s]["dedup_key"]) for s in dataset]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])


BAD_FILES = {
    "missing_column.csv": lambda p: write_csv(p, [{"text": "hello there", "sentiment": "x"}]),
    "latin1.csv": lambda p: p.write_bytes("text,label\ncaf\xe9 ok,positive\n".encode("latin-1")),
    "empty.csv": lambda p: p.write_bytes(b""),
    "truncated.parquet": lambda p: p.write_bytes(_parquet_bytes()[:200]),
    "broken.jsonl": lambda p: p.write_text('{"text": "ok", "label": "neutral"}\n{"text": oops\n'),
}


def _parquet_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    pd.DataFrame(fixture_rows(5)).to_parquet(buf)
    return buf.getvalue()


def test_bad_files_fail_their_partition_only(project: Project):
    for name, make in BAD_FILES.items():
        make(project.incoming / name)
    write_csv(project.incoming / "good.csv", fixture_rows(10, seed=3))
    pd.DataFrame(fixture_rows(10, seed=4)).to_json(
        project.incoming / "good.jsonl", orient="records", lines=True
    )
    keys = [f"incoming:{n}" for n in [*BAD_FILES, "good.csv", "good.jsonl"]]
    project.add(*keys)
    outcomes = {k: project.materialize(DATA, k) for k in keys}

    assert outcomes["incoming:good.csv"].success and outcomes["incoming:good.jsonl"].success
    for key in ("incoming:latin1.csv", "incoming:truncated.parquet", "incoming:broken.jsonl"):
        failure = outcomes[key].failure_data_for_node("raw_data")
        assert failure is not None, key
        message = failure.error.message
        assert key.removeprefix("incoming:") in message
    assert (
        "not valid utf-8"
        in outcomes["incoming:latin1.csv"].failure_data_for_node("raw_data").error.message
    )
    assert (
        "line 2"
        in outcomes["incoming:broken.jsonl"].failure_data_for_node("raw_data").error.message
    )
    for key, problem in (
        ("incoming:missing_column.csv", "missing column 'label'"),
        ("incoming:empty.csv", "no rows"),
    ):
        result = outcomes[key]
        assert not result.success
        assert _checks(result)["raw_data_schema"] is False
        [evaluation] = result.get_asset_check_evaluations()
        assert problem in evaluation.description
        assert not result.asset_materializations_for_node("cleaned_data"), key

    result = project.materialize(TOKENIZED)
    assert result.success
    meta = _metadata(result, "tokenized_dataset")
    assert set(meta["partitions"]) == {"incoming:good.csv", "incoming:good.jsonl"}
    assert set(meta["excluded_partitions"]) == {k for k in keys if "good" not in k}


def _negatives(n: int, seed: int) -> list[dict[str, str]]:
    return [r for r in fixture_rows(n, seed=seed) if r["label"] == "negative"]


def test_a_one_label_file_passes_its_gates_and_is_joined(project: Project):
    """A delivery of complaints, all negative, is good data: label shares are judged on the
    joined training split, which the corpus keeps balanced."""
    write_csv(project.incoming / "complaints.csv", _negatives(12, seed=5))
    project.add("file:data/corpus.csv", "incoming:complaints.csv")
    assert project.materialize(DATA, "file:data/corpus.csv").success
    one_sided = project.materialize(DATA, "incoming:complaints.csv")
    assert one_sided.success and all(_checks(one_sided).values()), _checks(one_sided)

    result = project.materialize(TOKENIZED)
    assert result.success and _checks(result)["tokenized_dataset_label_balance"] is True
    meta = _metadata(result, "tokenized_dataset")
    assert "incoming:complaints.csv" in meta["partitions"] and not meta["excluded_partitions"]


def test_a_one_sided_training_split_fails_label_balance_on_the_join(project: Project):
    write_csv(project.incoming / "complaints.csv", _negatives(30, seed=5))
    project.add("incoming:complaints.csv")
    assert project.materialize(DATA, "incoming:complaints.csv").success
    result = project.materialize(TOKENIZED)
    assert _checks(result)["tokenized_dataset_label_balance"] is False
    [balance] = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "tokenized_dataset_label_balance"
    ]
    below = balance.metadata["below_minimum"].value
    assert set(below) == {"neutral", "positive"} and all(v == 0 for v in below.values())


def test_a_wholly_quarantined_file_fails_naming_its_reasons_row_by_row(project: Project):
    rows = [{**r, "label": "meh"} for r in fixture_rows(4, seed=7)]
    write_csv(project.incoming / "unlabelled.csv", rows)
    project.add("file:data/corpus.csv", "incoming:unlabelled.csv")
    assert project.materialize(DATA, "file:data/corpus.csv").success
    result = project.materialize(DATA, "incoming:unlabelled.csv")
    assert not result.success and _checks(result)["cleaned_data_rows_kept"] is False
    [kept] = [e for e in result.get_asset_check_evaluations() if e.check_name.endswith("rows_kept")]
    assert f"all {len(rows)} rows were quarantined" in kept.description
    assert "unknown_label" in kept.description and "'meh'" in kept.description
    # The asset itself materialized, so the UI shows each row with its reason.
    meta = _metadata(result, "cleaned_data")
    assert meta["rows_kept"] == 0 and meta["rows_quarantined"] == len(rows)
    assert meta["quarantine_preview"].count("unknown label 'meh'") == len(rows)

    meta = _metadata(project.materialize(TOKENIZED), "tokenized_dataset")
    assert "rows_kept" in meta["excluded_partitions"]["incoming:unlabelled.csv"]


def test_cli_run_materializes_and_then_skips_up_to_date(project: Project, monkeypatch, capsys):
    from ft_pipeline import cli

    for var in ("FT_HOME", "FT_RECIPE", "DAGSTER_HOME"):
        monkeypatch.setenv(var, "unused")
    home = project.root / "cli-home"
    args = ["--home", str(home), "--recipe", project.recipe.path, "run"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert f"{len(_corpus_rows())} rows in = " in out
    manifest = json.loads((home / "data" / "tokenized" / "fixture" / "manifest.json").read_text())
    assert sum(manifest["split_sizes"].values()) == manifest["rows_out"]
    assert (home / "dagster" / "dagster.yaml").is_file()

    assert cli.main(args) == 0
    assert "up to date" in capsys.readouterr().out


def test_cli_reports_a_bad_recipe(tmp_path: Path, monkeypatch, capsys):
    from ft_pipeline import cli

    for var in ("FT_HOME", "FT_RECIPE", "DAGSTER_HOME"):
        monkeypatch.setenv(var, "unused")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlabels: [a, b]\ncleaning:\n  urls: strip\n")
    assert cli.main(["--home", str(tmp_path / "h"), "--recipe", str(bad), "run"]) == 2
    err = capsys.readouterr().err
    assert "cleaning.urls" in err and "'strip'" in err and "'keep'" in err
