"""Incremental reruns: what adding one file, or re-asking for an unchanged adapter, costs.

In a temporary state folder, through `dg.materialize` on a real Dagster instance (as
`ft-pipeline run` does), with the bundled corpus materialized first, it times:
(a) a full rebuild: raw_data + cleaned_data of the corpus partition, then tokenized_dataset,
    with the per-partition cache (signatures, tokens) deleted first;
(b) one new 1,000-row file in the landing folder: raw + clean of that partition only, then
    the tokenized join (target: under 15% of (a));
(c) fine_tuned_adapter trained (a small recipe: 256 training rows), then re-materialized with
    unchanged inputs, i.e. reused by adapter key (target: under 5% of training).
Prints what reran, one JSON line (also appended to bench/results/incremental.jsonl) and a
summary on stdout; Dagster's own log goes to stderr (add `2>/dev/null` to hide it).

    .venv/bin/python bench/incremental.py            # full bundled corpus, ~2 min on 2 idle cores
    .venv/bin/python bench/incremental.py --quick    # 3,000-row sample of it, a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from _common import emit_json  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from ft_pipeline.lib.data.sources import BUNDLED_TWEETS, bundled_tweets_path  # noqa: E402
from ft_pipeline.lib.state.paths import StatePaths, prepare_dagster_home  # noqa: E402

NEW_KEY = "incoming:new.csv"


def corpus() -> pd.DataFrame:
    raw = pd.read_csv(bundled_tweets_path(), encoding="latin-1")
    return raw.rename(columns={"sentiment": "label"})[["text", "label", "confidence"]]


def new_rows(frame: pd.DataFrame, n: int, seed: int = 7) -> pd.DataFrame:
    """n new tweets: the first half of one tweet joined to the second half of another with
    the same label, so none is a (near) duplicate of a corpus row."""
    picked = []
    for label, group in frame.dropna(subset=["text"]).groupby("label"):
        k = round(n * len(group) / len(frame))
        a, b = group.sample(k, random_state=seed), group.sample(k, random_state=seed + 1)
        for (_, x), (_, y) in zip(a.iterrows(), b.iterrows(), strict=True):
            head, tail = x["text"].split(), y["text"].split()
            text = " ".join(head[: max(1, len(head) // 2)] + tail[len(tail) // 2 :])
            picked.append({"text": text, "label": label, "confidence": x["confidence"]})
    return pd.DataFrame(picked[:n])


def write_recipe(tmp: Path, quick: bool) -> tuple[Path, str]:
    data = yaml.safe_load((ROOT / "recipes" / "tweet_sentiment.yaml").read_text())
    rows, val, every = (64, 32, 4) if quick else (256, 64, 8)
    data["training"].update(max_train_rows=rows, max_val_rows=val, eval_every=every)
    data["training"]["checkpoint_every"] = every
    key = BUNDLED_TWEETS
    if quick:  # a sample of the corpus as a recipe file source
        corpus().sample(3000, random_state=1).to_csv(tmp / "corpus.csv", index=False)
        data["data"]["sources"], key = ["corpus.csv"], "file:corpus.csv"
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, key


def splits_by_row(folder: Path) -> dict[tuple[str, int], str]:
    """(source partition, row number) -> split, of the saved tokenized dataset."""
    from ft_pipeline.lib.data.tokenized import load_tokenized

    dataset, _ = load_tokenized(folder)
    return {
        (src, row): name
        for name, part in dataset.items()
        for src, row in zip(part["source"], part["source_row"], strict=True)
    }


class Bench:
    def __init__(self) -> None:
        import dagster as dg

        from ft_pipeline.definitions import defs

        self.dg, self.defs = dg, defs
        self.instance = dg.DagsterInstance.get()
        self.reran: dict[str, list[str]] = {}

    def materialize(self, phase: str, assets: list[str], partition: str | None = None):
        """Materialize like the CLI; returns (wall seconds, {step: seconds}, metadata)."""
        dg = self.dg
        started = time.monotonic()
        result = dg.materialize(
            [*self.defs.assets, *self.defs.asset_checks],
            selection=dg.AssetSelection.assets(*assets),
            partition_key=partition,
            instance=self.instance,
            resources=self.defs.resources,
            raise_on_error=True,
        )
        wall = time.monotonic() - started
        steps = {
            s.step_key: round(s.end_time - s.start_time, 2)
            for s in self.instance.get_run_step_stats(result.run_id)
        }
        events = result.get_asset_materialization_events()
        done = [
            e.asset_key.to_user_string() + (f"[{e.partition}]" if e.partition else "")
            for e in events
        ]
        self.reran.setdefault(phase, []).extend(done)
        print(f"  {phase}: {', '.join(done)} in {wall:.1f}s (steps {steps})", flush=True)
        meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in events}
        return wall, steps, {a: {k: v.value for k, v in m.items()} for a, m in meta.items()}

    def build(self, phase: str, key: str) -> tuple[float, dict, dict]:
        w1, s1, _ = self.materialize(phase, ["raw_data", "cleaned_data"], key)
        w2, s2, meta = self.materialize(phase, ["tokenized_dataset"])
        return w1 + w2, {**s1, **s2}, meta["tokenized_dataset"]


def train_then_reuse(b: Bench):
    """(c): train the adapter, then materialize it again with unchanged inputs (a reuse).

    Returns ((train s, steps, adapter metadata), (reuse s, steps, metadata), retried): when the
    second run retrained (the key changed: training code edited meanwhile?) it counts as
    the training and the reuse is measured once more."""
    adapter, retried = ["fine_tuned_adapter"], False
    train, train_steps, m1 = b.materialize("(c) train adapter", adapter)
    reuse, reuse_steps, m2 = b.materialize("(c) unchanged inputs", adapter)
    if not m2["fine_tuned_adapter"]["reused"]:  # the key changed: training code edited meanwhile?
        print("  ! retrained: adapter key changed between the two runs; once more", flush=True)
        train, train_steps, m1, retried = reuse, reuse_steps, m2, True
        reuse, reuse_steps, m2 = b.materialize("(c) unchanged inputs, again", adapter)
    a1, a2 = m1["fine_tuned_adapter"], m2["fine_tuned_adapter"]
    return (train, train_steps, a1), (reuse, reuse_steps, a2), retried


def run(args: argparse.Namespace, tmp: Path) -> dict:
    home = tmp / "home"
    recipe, key = write_recipe(tmp, args.quick)
    os.environ.update(FT_HOME=str(home), FT_RECIPE=str(recipe))
    paths = StatePaths(home).ensure()
    os.environ["DAGSTER_HOME"] = str(prepare_dagster_home(paths))
    if (ROOT / ".ft_home" / "models").is_dir():  # the converted base model: skip conversion
        shutil.copytree(ROOT / ".ft_home" / "models", home / "models", dirs_exist_ok=True)
    b = Bench()
    from ft_pipeline.defs.partitions import source_partitions

    b.instance.add_dynamic_partitions(source_partitions.name, [key])
    print(f"state {home}, recipe {recipe}, corpus partition {key}")
    initial, _, _ = b.build("initial build", key)
    # A full rebuild starts cold: without the per-partition cache of signatures and tokens.
    shutil.rmtree(paths.partition_cache("tweet_sentiment"), ignore_errors=True)
    full, full_steps, tok = b.build("(a) full rebuild", key)
    before = splits_by_row(paths.tokenized("tweet_sentiment"))

    n = 200 if args.quick else 1000
    landing = paths.incoming / ".new.csv.part"  # in-progress names are ignored
    new_rows(corpus(), n).to_csv(landing, index=False)
    os.replace(landing, paths.incoming / "new.csv")
    started = time.monotonic()
    b.instance.add_dynamic_partitions(source_partitions.name, [NEW_KEY])
    _, inc_steps, tok2 = b.build("(b) one new file", NEW_KEY)
    inc = time.monotonic() - started
    after = splits_by_row(paths.tokenized("tweet_sentiment"))
    moved = sum(after.get(row, split) != split for row, split in before.items())

    (train, train_steps, a1), (reuse, reuse_steps, a2), retried = train_then_reuse(b)
    b.instance.dispose()
    assert not a1["reused"] and a2["reused"] and a1["adapter_key"] == a2["adapter_key"]
    return {
        "bench": "incremental",
        "quick": args.quick,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": f"{platform.node()} ({os.cpu_count()} CPUs)",
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "corpus_partition": key,
        "corpus_rows_tokenized": tok["rows_in"],
        "initial_build_s": round(initial, 2),
        "full_rebuild_s": round(full, 2),
        "full_rebuild_steps_s": full_steps,
        "new_file_rows": n,
        "new_file_rows_joined": tok2["rows_in"] - tok["rows_in"],
        "partition_cache_hits_on_new_file": tok2["partition_cache_hits"],
        "new_file_cross_partition_duplicates": tok2["cross_partition_duplicates"]
        - tok["cross_partition_duplicates"],
        "incremental_s": round(inc, 2),
        "incremental_steps_s": inc_steps,
        "incremental_ratio": round(inc / full, 4),
        "incremental_ok": inc / full < 0.15,
        "old_rows_that_changed_split": moved,
        "old_rows": len(before),
        "train_rows": a1["train_rows"],
        "train_steps": a1["steps"],
        "train_s": round(train, 2),
        "train_steps_s": train_steps,
        "reuse_s": round(reuse, 2),
        "reuse_steps_s": reuse_steps,
        "reuse_ratio": round(reuse / train, 4),
        "reuse_ok": reuse / train < 0.05,
        "adapter_key_changed_between_runs": retried,
        "reran": b.reran,
    }


def summary(r: dict) -> None:
    ok = {True: "ok", False: "MISSED"}
    print(
        f"\n(a) full rebuild ({r['corpus_rows_tokenized']} rows):  {r['full_rebuild_s']:7.1f}s"
        f"   (initial build {r['initial_build_s']:.1f}s)\n"
        f"(b) +1 file of {r['new_file_rows']} rows:     {r['incremental_s']:7.1f}s"
        f"   {r['incremental_ratio']:.1%} of (a), target < 15%: {ok[r['incremental_ok']]}\n"
        f"    old rows moved to another split: {r['old_rows_that_changed_split']}"
        f" of {r['old_rows']}\n"
        f"(c) train adapter ({r['train_rows']} rows):  {r['train_s']:7.1f}s\n"
        f"    reuse, unchanged inputs:    {r['reuse_s']:7.1f}s"
        f"   {r['reuse_ratio']:.1%} of training, target < 5%: {ok[r['reuse_ok']]}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a corpus sample, for a smoke run")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ft-bench-incremental-") as tmp:
        result = run(args, Path(tmp))
    emit_json(result, Path(args.out) / f"incremental{'-quick' if args.quick else ''}.jsonl")
    summary(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
