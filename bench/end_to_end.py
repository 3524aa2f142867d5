"""End to end: wall time of `make run`'s pipeline, by asset, and the child's peak memory.

Runs `ft-pipeline --home <temp> [--recipe PATH] run` as a subprocess against a fresh state
folder (the converted base model is copied in from .ft_home/models when present), then
reads the step timings of every run from the Dagster instance it left behind. Reports
seconds per CLI stage (each a Dagster run), per asset (its step plus its checks) and per
step, the slowest step, total wall and the child's peak RSS. Prints one JSON line (also
appended to bench/results/end_to_end.jsonl) and a summary; Dagster's log goes to a file.

    .venv/bin/python bench/end_to_end.py            # default recipe, ~3-4 min on 2 idle cores
    .venv/bin/python bench/end_to_end.py --recipe recipes/tweet_sentiment_encoder.yaml
    .venv/bin/python bench/end_to_end.py --quick    # 3,000-row sample, tiny training
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import emit_json  # noqa: E402

DEFAULT_RECIPE = ROOT / "recipes" / "tweet_sentiment.yaml"
STAGE = re.compile(r"^(?:\[\d+/\d+\] )?(.+) \.\.\.$")
DONE = re.compile(r"^\s+(ok|FAILED) in ([\d.]+)s")
ASSETS = ["raw_data", "cleaned_data", "tokenized_dataset", "fine_tuned_adapter"]
ASSETS += ["evaluation_report", "deployed_model"]


def quick_recipe(base: Path, tmp: Path) -> Path:
    """A 3,000-row sample of the bundled corpus and a tiny training, gate always passes."""
    import pandas as pd

    from ft_pipeline.lib.data.sources import bundled_tweets_path

    raw = pd.read_csv(bundled_tweets_path(), encoding="latin-1")
    sample = raw.rename(columns={"sentiment": "label"})[["text", "label", "confidence"]]
    sample.sample(3000, random_state=1).to_csv(tmp / "corpus.csv", index=False)
    data = yaml.safe_load(base.read_text())
    data["data"]["sources"] = ["corpus.csv"]
    data["training"].update(max_train_rows=64, max_val_rows=32, eval_every=4, checkpoint_every=4)
    data["evaluation"].update(max_test_rows=100, bootstrap_samples=100, min_f1_gain=-1.0)
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_cli(home: Path, recipe: Path, until: str | None, log: Path) -> tuple[int, float, dict]:
    """Run the CLI, echo its stdout; returns (exit code, wall seconds, {stage: seconds})."""
    cmd = [str(ROOT / ".venv" / "bin" / "ft-pipeline"), "--home", str(home)]
    cmd += ["--recipe", str(recipe), "run"] + (["--until", until] if until else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GX_ANALYTICS_ENABLED": "false"}
    env.update(PYTHONUNBUFFERED="1", FT_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    print("$ " + " ".join(cmd), flush=True)
    stages, current = {}, None
    started = time.monotonic()
    with open(log, "w") as err:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )
        for line in proc.stdout:
            print(line, end="", flush=True)
            if m := DONE.match(line):
                stages[current] = float(m[2])
            elif m := STAGE.match(line.rstrip("\n")):
                current = m[1]
        code = proc.wait()
    return code, time.monotonic() - started, stages


def step_timings(dagster_home: Path) -> tuple[dict, dict]:
    """From the instance: ({step key: seconds}, {asset: seconds of its step and checks})."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    steps: dict[str, float] = {}
    with dg.DagsterInstance.get() as instance:
        for run in reversed(instance.get_runs()):
            for s in instance.get_run_step_stats(run.run_id):
                if s.start_time and s.end_time:
                    steps[s.step_key] = steps.get(s.step_key, 0.0) + s.end_time - s.start_time
    by_asset: dict[str, float] = {}
    for key, took in steps.items():
        asset = max((a for a in ASSETS if key.startswith(a)), key=len, default=key)
        by_asset[asset] = by_asset.get(asset, 0.0) + took
    return _round(steps), _round(by_asset)


def _round(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in d.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="recipe YAML")
    parser.add_argument("--quick", action="store_true", help="a corpus sample, tiny training")
    parser.add_argument("--until", help="last asset to build (as `ft-pipeline run --until`)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ft-bench-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        recipe = quick_recipe(args.recipe.resolve(), tmp) if args.quick else args.recipe.resolve()
        if (ROOT / ".ft_home" / "models").is_dir():  # skip the GGUF conversion
            shutil.copytree(ROOT / ".ft_home" / "models", home / "models")
        load = os.getloadavg()[0]
        code, wall, stages = run_cli(home, recipe, args.until, tmp / "dagster.log")
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if code != 0:
            print((tmp / "dagster.log").read_text()[-4000:], file=sys.stderr)
        steps, by_asset = step_timings(home / "dagster")
    slowest = max(steps, key=steps.get) if steps else None
    result = {
        "bench": "end_to_end",
        "quick": args.quick,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": f"{platform.node()} ({os.cpu_count()} CPUs)",
        "loadavg_1m_at_start": round(load, 2),
        "recipe": str(args.recipe),
        "exit_code": code,
        "total_wall_s": round(wall, 2),
        "stages_s": stages,
        "startup_and_overhead_s": round(wall - sum(stages.values()), 2),
        "assets_s": by_asset,
        "steps_s": steps,
        "slowest_step": slowest,
        "slowest_step_s": steps.get(slowest),
        "peak_rss_mb": round(peak_kb / 1024),
    }
    emit_json(result, Path(args.out) / f"end_to_end{'-quick' if args.quick else ''}.jsonl")
    print(f"\n{'asset (step + checks)':<26} {'seconds':>8}   share of wall")
    for asset, took in by_asset.items():
        print(f"{asset:<26} {took:>8.1f}   {took / wall:6.1%}")
    print(
        f"{'total wall':<26} {wall:>8.1f}   (CLI start-up and run overhead "
        f"{result['startup_and_overhead_s']:.1f}s)\nslowest step: {slowest} "
        f"({result['slowest_step_s']}s); child peak RSS {result['peak_rss_mb']} MB; "
        f"exit code {code}"
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
