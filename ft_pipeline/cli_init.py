"""`ft-pipeline init PATH`: write a starter recipe from a data file (`init_recipe.py`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ft_pipeline.lib.state.paths import StatePaths, default_home

TASKS = ("classification", "instruction", "chat")


def add_parser(sub) -> None:
    """The `init` subcommand of `ft-pipeline`."""
    init = sub.add_parser("init", help="write a starter recipe from a data file")
    init.add_argument("path", help="a CSV, TSV, JSONL or Parquet file")
    init.add_argument("--task", choices=TASKS, help="default: inferred from the columns")
    init.add_argument("--out", help="the recipe to write (default recipes/NAME.yaml)")
    init.add_argument("--name", help="the recipe's name (default: from the file's name)")
    init.add_argument("--force", action="store_true", help="overwrite an existing recipe")
    init.set_defaults(func=cmd_init)


def cmd_init(args: argparse.Namespace) -> int:
    """Profile the file, write the recipe, print every choice and how to run it."""
    from ft_pipeline.init_recipe import InitError, for_make, init_recipe

    home = Path(args.home).resolve() if args.home else default_home()
    print(f"profiling {args.path} ...", flush=True)
    try:
        out, report = init_recipe(
            Path(args.path),
            StatePaths(home).models,
            task=args.task,
            out=Path(args.out) if args.out else None,
            name=args.name,
            force=args.force,
        )
    except InitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(report))
    others = other_partitions(StatePaths(home), out)
    if others:
        own = home.with_name(f"{home.name}-{out.stem}")
        print(
            f"note: {home} already holds other sources ({', '.join(others)}), and "
            "tokenized_dataset joins every source of its state folder: run this recipe in a "
            f"state folder of its own, {own}"
        )
        home = own
    home_flag = f" --home {home}" if args.home or others else ""
    make_home = f" FT_HOME={home}" if args.home or others else ""
    print("run it with:")
    print(f"  ft-pipeline{home_flag} --recipe {out} run")
    print(f"  make run RECIPE={for_make(out)}{make_home}")
    return 0


def other_partitions(paths: StatePaths, recipe_path: Path) -> list[str]:
    """Source partitions the state folder holds that are not the recipe's own."""
    from ft_pipeline.lib.data.sources import configured_keys
    from ft_pipeline.recipe import load_recipe

    own = set(configured_keys(load_recipe(recipe_path)))
    found = []
    for sidecar in sorted((paths.root / "data" / "raw").glob("*.source.json")):
        key = json.loads(sidecar.read_text()).get("key")
        if key and key not in own:
            found.append(key)
    return found
