"""The `ft-pipeline` commands besides `run`: predict, rollback, status, the MLflow server,
the recipe reference; and the set-up every command shares (state folder, recipe)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ft_pipeline.lib.state.paths import HOME_ENV, RECIPE_ENV, StatePaths, prepare_dagster_home


def setup_state(args: argparse.Namespace) -> StatePaths:
    if args.home:
        os.environ[HOME_ENV] = str(Path(args.home).resolve())
    if args.recipe:
        os.environ[RECIPE_ENV] = str(Path(args.recipe).resolve())
    from ft_pipeline.lib.state.paths import default_home

    paths = StatePaths(default_home()).ensure()
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(paths))
    return paths


def _registry_target():
    from ft_pipeline.defs.resources import MlflowResource, RecipeResource

    recipe = RecipeResource().load()
    return MlflowResource().uri(state_resource()), recipe.model_name


def cmd_predict(args: argparse.Namespace) -> int:
    """Print the champion's label and scores for each text."""
    setup_state(args)
    import mlflow
    import pandas as pd

    uri, name = _registry_target()
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    except mlflow.exceptions.MlflowException as exc:
        print(f"error: no champion for {name!r} yet (run `make run`): {exc}", file=sys.stderr)
        return 1
    out = model.predict(pd.DataFrame({"text": args.texts}))
    for text, row in zip(args.texts, out.to_dict(orient="records"), strict=True):
        # label (classification), labels (a JSON list: multilabel) or response (generation)
        answer = next(row[k] for k in ("label", "labels", "response") if k in row)
        scores = ", ".join(
            f"{k.removeprefix('score_')} {v:.3f}" for k, v in row.items() if k.startswith("score_")
        )
        print(f"{answer}\t({scores})\t{text}" if scores else f"{answer}\t{text}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Move the champion alias back to the version it replaced."""
    setup_state(args)
    from ft_pipeline.lib.deployment.registry import RegistryError, rollback

    uri, name = _registry_target()
    try:
        before, after = rollback(uri, name)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{name}: champion moved from version {before} back to version {after}")
    return 0


def cmd_mlflow_server(args: argparse.Namespace) -> int:
    """Replace this process with `mlflow server` on PostgreSQL (lib.state.tracking_server)."""
    paths = setup_state(args)
    from ft_pipeline.lib.state.tracking_server import server_command

    try:
        argv, env = server_command(
            os.environ,
            paths.mlflow_artifacts,
            args.host,
            args.port,
            args.workers,
            args.allowed_hosts,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"MLflow tracking server: FT_MLFLOW_TRACKING_URI=http://{args.host}:{args.port}")
    sys.stdout.flush()
    os.execve(argv[0], argv, env)


def state_resource():
    from ft_pipeline.defs.resources import StateResource

    return StateResource()


def clean_counts(paths: StatePaths, key: str) -> str:
    from ft_pipeline.lib.data import partition_store as store

    s = store.read_clean_info(paths, key) or {}
    return (
        f"{s.get('rows_in')} rows in = {s.get('rows_kept')} kept + "
        f"{s.get('rows_quarantined')} quarantined"
    )


def cmd_status(args: argparse.Namespace) -> int:
    """Per-partition row counts and gate status, from the files under the state folder."""
    paths = setup_state(args)
    import dagster as dg

    from ft_pipeline.defs.partitions import source_partitions
    from ft_pipeline.lib.data import partition_store as store

    instance = dg.DagsterInstance.get()
    for key in instance.get_dynamic_partitions(source_partitions.name):
        gate = store.read_gate(paths, key)
        status = "unchecked" if gate is None else ("passed" if gate["passed"] else "FAILED")
        print(f"{key}: {clean_counts(paths, key)}; gate {status}")
    return 0


def cmd_recipe_reference(args: argparse.Namespace) -> int:
    """Print the recipe reference (docs/recipe-reference.md), or write it to --out."""
    from ft_pipeline.recipe_reference import render_reference, write_reference

    if args.out:
        print(f"wrote {write_reference(args.out)}")
    else:
        sys.stdout.write(render_reference())
    return 0
