"""`ft-pipeline run` prints one line per step (and the steps' own progress, throttled);
Dagster's event log goes to the file it names, and to the terminal too with -v."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import dagster as dg
import pytest

from ft_pipeline.cli_log import RunLog, StepEcho
from ft_pipeline_tests.conftest import fixture_rows, write_csv, write_recipe


@pytest.fixture
def cli_args(tmp_path: Path, tiny_model_dir: Path, monkeypatch) -> list[str]:
    for var in ("FT_HOME", "FT_RECIPE", "DAGSTER_HOME"):
        monkeypatch.setenv(var, "unused")
    corpus = write_csv(tmp_path / "data" / "corpus.csv", fixture_rows(20))
    recipe = write_recipe(tmp_path, tiny_model_dir, [f"data/{corpus.name}"])
    return ["--home", str(tmp_path / "home"), "--recipe", str(recipe), "run"]


def _log_file(out: str) -> Path:
    [path] = re.findall(r"Dagster's event log: (\S+\.log)", out)
    return Path(path)


def test_run_prints_its_steps_and_names_a_log_file_that_holds_every_event(cli_args, capfd):
    from ft_pipeline import cli

    assert cli.main([*cli_args, "--until", "tokenized_dataset"]) == 0
    out, err = capfd.readouterr()
    assert "(-v prints it here)" in out
    for noise in ("STEP_START", "DEBUG", "ASSET_MATERIALIZATION", "RUN_SUCCESS"):
        assert noise not in out and noise not in err
    assert "tokenized_dataset ...\n" in out and "    ok in " in out
    assert "      cleaned_data: " in out  # the step's own message, indented under it
    events = _log_file(out).read_text()
    for event in ("RUN_START", "STEP_START", "ASSET_CHECK_EVALUATION", "RUN_SUCCESS"):
        assert f" - {event} - " in events
    assert events.count(" - RUN_SUCCESS - ") == 2  # the data run and the tokenized run


def test_verbose_run_prints_dagsters_event_log_as_well(cli_args, capfd):
    from ft_pipeline import cli

    assert cli.main([*cli_args, "--until", "tokenized_dataset", "-v"]) == 0
    out, err = capfd.readouterr()
    assert "STEP_START" in out + err
    assert "(-v prints it here)" not in out
    assert " - STEP_START - " in _log_file(out).read_text()


def _run_job(log: RunLog, tmp_path: Path, body) -> None:
    @dg.asset
    def talking(context) -> None:
        body(context.log)

    job_defs = dg.Definitions(
        jobs=[dg.define_asset_job("j", selection=[talking])],
        assets=[talking],
        loggers=log.loggers(),
    )
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = job_defs.resolve_job_def("j").execute_in_process(
            instance=instance, run_config=log.run_config()
        )
    assert result.success


def test_progress_of_a_kind_is_throttled_and_warnings_always_print(tmp_path):
    log = RunLog(tmp_path / "logs")
    stream = io.StringIO()
    log.echo = StepEcho(stream, every_s=3600)

    def body(logger) -> None:
        for step in range(1, 6):
            logger.info(f"step {step}/5 loss 0.{step}")
        logger.info("resumed from checkpoint at step 4")
        logger.warning("partition x left out:\nits gate failed")
        logger.info("step 5/5 loss 0.5")

    _run_job(log, tmp_path, body)
    lines = stream.getvalue().splitlines()
    assert lines == [
        "      talking: step 1/5 loss 0.1",
        "      talking: resumed from checkpoint at step 4",
        "      talking: WARNING: partition x left out:",
        "        its gate failed",
    ]
    log.close()
    saved = log.path.read_text()
    assert all(f"step {i}/5 loss" in saved for i in range(1, 6))  # the file keeps them all


def test_library_warnings_go_to_the_file_and_logging_is_put_back(tmp_path, capfd):
    import warnings

    log = RunLog(tmp_path / "logs")
    before = logging.getLogger("py.warnings").propagate
    with warnings.catch_warnings(), log.quiet_libraries():
        warnings.simplefilter("always")
        warnings.warn("a library's deprecation notice", UserWarning, stacklevel=1)
    log.close()
    assert "deprecation notice" not in capfd.readouterr().err
    assert "deprecation notice" in log.path.read_text()
    assert logging.getLogger("py.warnings").propagate == before
    assert log.file not in logging.getLogger("py.warnings").handlers
