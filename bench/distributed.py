"""Training strategies side by side: one process, DDP on 2, FSDP on 2 (gloo on this CPU).

The shipped recipe (bundled SmolLM2-135M-Instruct, its `classifier` head, its LoRA and
batch settings), one epoch over the same stratified training rows, each strategy launched
the way the asset launches it (`launch.train_in_workers`: torchrun, the cores split
between the processes). Reported per strategy, all from the same run:

- useful tokens per second of training, and the ratio to one process;
- the largest peak RSS of any of its processes, and the ratio to one process;
- the weights each process holds (FSDP's own log line; the whole model otherwise);
- the final validation loss, which must agree across strategies (same rows, same steps).

    .venv/bin/python bench/distributed.py            # 512 rows, ~6 minutes on 2 idle cores
    .venv/bin/python bench/distributed.py --quick    # 64 rows, a smoke run
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from _common import MODELS_DIR as MODELS
from _common import ROOT, clean_tweets, emit_json, rows_args
from datasets import DatasetDict

from ft_pipeline.lib.data.tokenized import build_tokenized
from ft_pipeline.lib.model.base_models import load_tokenizer, resolve_base_model
from ft_pipeline.lib.training.job import train_indices, val_indices
from ft_pipeline.lib.training.launch import train_in_workers
from ft_pipeline.recipe import DistributedConfig, Recipe, load_recipe

STRATEGIES = (("single", 1), ("ddp", 2), ("fsdp", 2))
HELD = re.compile(r"holds ([\d,]+) of ([\d,]+) weights")


def bench_recipe(rows: int, strategy: str, processes: int) -> Recipe:
    r = load_recipe(ROOT / "recipes" / "tweet_sentiment.yaml")
    training = r.training.model_copy(
        update={
            "max_train_rows": rows,
            "max_val_rows": 128,
            "epochs": 1,
            "eval_every": 10_000,  # one validation, at the end
            "checkpoint_every": 10_000,
            "early_stopping_patience": None,
            "distributed": DistributedConfig(strategy=strategy, processes=processes),
        }
    )
    return r.model_copy(update={"training": training})


def run(job: dict, nproc: int, folder: Path) -> dict:
    lines: list[str] = []
    result = train_in_workers(
        job, nproc, folder, log=lines.append, warn=lines.append, on_log=lambda _: None
    )
    held = [HELD.search(line) for line in lines]
    held_by_rank = [int(m.group(1).replace(",", "")) for m in held if m]
    total = next((int(m.group(2).replace(",", "")) for m in held if m), None)
    return {
        "tokens_per_s": round(result.tokens_per_s, 1),
        "seconds": round(result.seconds, 1),
        "steps": result.steps,
        "peak_rss_gib": round(result.peak_rss_mb / 1024, 3),
        "weights_per_process": max(held_by_rank) if held_by_rank else None,
        "weights_total": total,
        "final_val_loss": round(result.final_val_loss, 5),
    }


def main() -> int:
    args = rows_args(__doc__, 512, 64)
    rows = args.rows
    recipe = bench_recipe(rows, "single", 1)
    tokenizer = load_tokenizer(recipe.model.base, MODELS)
    dataset = build_tokenized(clean_tweets(recipe), recipe, tokenizer).dataset
    base_dir = str(resolve_base_model(recipe.model.base, MODELS, weights=True))

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tokenized"
        DatasetDict(dict(dataset)).save_to_disk(str(folder))
        for strategy, nproc in STRATEGIES:
            r = bench_recipe(rows, strategy, nproc)
            job = {
                "recipe": r.model_dump(mode="json"),
                "dataset": str(folder),
                "train_rows": [int(i) for i in train_indices(dataset, r)],
                "val_rows": [int(i) for i in val_indices(dataset, r)],
                "base_dir": base_dir,
                "pad_id": tokenizer.pad_token_id,
                "out_dir": f"{tmp}/{strategy}",
                "device": "auto",
            }
            results[strategy] = run(job, nproc, Path(tmp) / strategy / "workers")
            print(f"{strategy}: {results[strategy]}", file=sys.stderr, flush=True)

    one, total = results["single"], results["fsdp"]["weights_total"]
    for res in results.values():  # unsharded: every process holds the whole model
        res["weights_per_process"] = res["weights_per_process"] or total
        res["weights_total"] = total
    for name in ("ddp", "fsdp"):
        res = results[name]
        res["speed_vs_single"] = round(res["tokens_per_s"] / one["tokens_per_s"], 3)
        res["peak_rss_vs_single"] = round(res["peak_rss_gib"] / one["peak_rss_gib"], 3)
        res["val_loss_vs_single"] = round(res["final_val_loss"] / one["final_val_loss"] - 1, 5)
    suffix = "-quick" if args.quick else ""
    report = {"bench": "distributed", "rows": rows, **results}
    emit_json(report, Path(args.out) / f"distributed{suffix}.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
