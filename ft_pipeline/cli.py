"""`ft-pipeline`: run the pipeline end to end against the project's Dagster instance.

Runs go through the same Dagster instance as `make ui` (under the state folder), so every
materialization, check and log line is visible in the UI afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time

from ft_pipeline.cli_commands import (
    clean_counts,
    cmd_mlflow_server,
    cmd_predict,
    cmd_recipe_reference,
    cmd_rollback,
    cmd_status,
    setup_state,
    state_resource,
)
from ft_pipeline.cli_init import add_parser as add_init_parser
from ft_pipeline.cli_steps import DOWNSTREAM, run_steps, steps_for
from ft_pipeline.lib.state.paths import StatePaths

# The job name dg.materialize gives its runs; the UI and the runs list show it.
RUN_JOB = "__ephemeral_asset_job__"
VERBOSE_HELP = "print Dagster's event log here too (it always goes to the log file named)"


def _materialize(defs, instance, selection, partition_key=None, log=None):
    """One run of the selected assets and checks, in this process, logged by `log`
    (cli_log.RunLog: the named file and the step echo; Dagster's console log without it)."""
    import dagster as dg

    from ft_pipeline.defs.stale_runs import owner_tags, recover_stale_runs

    for run_id in recover_stale_runs(instance):
        print(f"    run {run_id}: its process is gone; marked failed, its pool slots freed")
    job = dg.define_asset_job(RUN_JOB, selection=selection)
    run_defs = dg.Definitions(
        jobs=[job],
        assets=[*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        loggers=log.loggers() if log is not None else None,
    )
    return run_defs.resolve_job_def(RUN_JOB).execute_in_process(
        run_config=log.run_config() if log is not None else None,
        instance=instance,
        partition_key=partition_key,
        raise_on_error=False,
        tags={"ft_pipeline/launched_by": "ft-pipeline run", **owner_tags()},
    )


def _failure_text(result) -> str:
    """Why a run failed: each failed check as a block (measured, limit, fix, where to look),
    and the error of any step that failed for another reason than a blocking check."""
    from ft_pipeline.defs.explained import failure_block

    blocks = [failure_block(e) for e in result.get_asset_check_evaluations() if not e.passed]
    errors = [
        e.event_specific_data.error
        for e in result.all_events
        if e.is_step_failure and e.event_specific_data and e.event_specific_data.error
    ]
    messages = [
        err.message.strip()
        for err in errors
        if not (blocks and err.cls_name == "DagsterAssetCheckFailedError")
    ]
    text = "\n".join([*messages, *blocks]) or "run failed"
    return text.replace("\n", "\n    ")


def _up_to_date(paths: StatePaths, source, recipe_hash: str) -> bool:
    from ft_pipeline.lib.data import partition_store as store
    from ft_pipeline.lib.state.paths import file_sha256

    try:
        raw = store.read_raw_info(paths, source.key)
    except FileNotFoundError:
        return False
    clean, gate = store.read_clean_info(paths, source.key), store.read_gate(paths, source.key)
    if not clean or not gate or raw["columns"] != source.columns.model_dump():
        return False
    if raw["sha256"] != file_sha256(source.path):
        return False
    version = store.clean_version(raw, recipe_hash)
    return clean["data_version"] == version and gate["data_version"] == version and gate["passed"]


def cmd_run(args: argparse.Namespace) -> int:
    """Register every source as a partition, clean each, then build the downstream assets:
    one line per step here, Dagster's event log in a file under the state folder."""
    from ft_pipeline.cli_log import RunLog

    paths = setup_state(args)
    log = RunLog(paths.root / "logs", verbose=getattr(args, "verbose", False))
    try:
        with log.quiet_libraries():
            return _run(args, paths, log)
    finally:
        log.close()


def _run(args: argparse.Namespace, paths: StatePaths, log) -> int:
    import dagster as dg

    from ft_pipeline.definitions import defs
    from ft_pipeline.defs.partitions import source_partitions
    from ft_pipeline.defs.resources import RecipeResource
    from ft_pipeline.lib.data.sources import discover

    recipe_res = RecipeResource()
    recipe = recipe_res.load()
    if args.command == "experiment" and recipe.experiment is None:
        print(
            f"error: {recipe_res.recipe_path()} has no `experiment:` section; add one "
            "(docs/experiments.md) or use `ft-pipeline run`",
            file=sys.stderr,
        )
        return 2
    instance = dg.DagsterInstance.get()
    sources = discover(recipe, recipe_res.base_dir(), recipe_res.landing(state_resource()))
    known = set(instance.get_dynamic_partitions(source_partitions.name))
    new = [s.key for s in sources if s.key not in known]
    if new:
        instance.add_dynamic_partitions(source_partitions.name, new)
    print(f"recipe {recipe.name} ({recipe_res.recipe_path()}), state {paths.root}")
    print(f"Dagster's event log: {log.path}" + ("" if log.verbose else " (-v prints it here)"))
    print(f"{len(sources)} source partitions ({len(new)} new)")

    failures: dict[str, str] = {}
    data = dg.AssetSelection.assets("raw_data", "cleaned_data")
    for i, source in enumerate(sources, 1):
        if not args.force and _up_to_date(paths, source, recipe.cleaning_hash()):
            print(f"[{i}/{len(sources)}] {source.key}: up to date")
            continue
        started = time.monotonic()
        print(f"[{i}/{len(sources)}] {source.key}: raw_data + cleaned_data ...", flush=True)
        result = _materialize(defs, instance, data, source.key, log)
        took = time.monotonic() - started
        if result.success:
            print(f"    ok in {took:.1f}s: {clean_counts(paths, source.key)}")
        else:
            failures[source.key] = _failure_text(result)
            print(f"    FAILED in {took:.1f}s: {failures[source.key]}")

    steps = steps_for(recipe, args.until_assets)
    failures |= run_steps(
        steps, lambda sel, part: _materialize(defs, instance, sel, part, log), _failure_text
    )
    if failures:
        print(f"{len(failures)} step(s) failed; every event of these runs: {log.path}")
    else:
        print("done; open the UI with `make ui`")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ft-pipeline", description=__doc__)
    parser.add_argument("--home", help="state folder (default $FT_HOME or .ft_home)")
    parser.add_argument("--recipe", help="recipe YAML (default $FT_RECIPE or the tweet recipe)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the pipeline end to end")
    run.add_argument("--force", action="store_true", help="recompute up-to-date partitions")
    run.add_argument(
        "--until", choices=DOWNSTREAM, default=DOWNSTREAM[-1], help="last asset to build"
    )
    run.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    run.set_defaults(func=cmd_run)
    experiment = sub.add_parser(
        "experiment", help="train, evaluate and compare the recipe's variants; deploy the winner"
    )
    experiment.add_argument("--force", action="store_true", help="recompute up-to-date partitions")
    experiment.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    experiment.set_defaults(func=cmd_run, until=DOWNSTREAM[-1])
    predict = sub.add_parser("predict", help="classify texts with the champion model")
    predict.add_argument("texts", nargs="+")
    predict.set_defaults(func=cmd_predict)
    rollback = sub.add_parser("rollback", help="move `champion` back to the previous version")
    rollback.set_defaults(func=cmd_rollback)
    sub.add_parser("status", help="show partitions and their gates").set_defaults(func=cmd_status)
    server = sub.add_parser("mlflow-server", help="MLflow tracking server on PostgreSQL")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=5000)
    server.add_argument("--workers", type=int, help="request workers (MLflow's default: 4)")
    server.add_argument("--allowed-hosts", help="Host headers to accept besides localhost")
    server.set_defaults(func=cmd_mlflow_server)
    ref = sub.add_parser("recipe-reference", help="Markdown reference of every recipe field")
    ref.add_argument("--out", help="write it to this file instead of stdout")
    ref.set_defaults(func=cmd_recipe_reference)
    add_init_parser(sub)
    args = parser.parse_args(argv)
    if args.command in ("run", "experiment"):
        args.until_assets = DOWNSTREAM[: DOWNSTREAM.index(args.until) + 1]
    from ft_pipeline.recipe import RecipeError

    try:
        return args.func(args)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
