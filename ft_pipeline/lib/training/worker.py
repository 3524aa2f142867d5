"""One of several training processes, as torchrun starts them:

    python -m torch.distributed.run --standalone --nproc_per_node N \\
        -m ft_pipeline.lib.training.worker <job.json>

The job file (`launch.write_job`) names the recipe, the tokenized dataset folder and the
rows to train and validate on, the base model folder and the output folder. Each process
joins the process group and calls `train_adapter`, which shares out every batch. Rank 0
prints each optimizer step as `@ft-step <StepLog JSON>` and each warning as
`@ft-warning <text>` for the parent to log and track, and writes the `TrainResult` as
JSON to the job's `result` path. Nothing here talks to MLflow: the parent does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from ft_pipeline.lib.state import atomic

STEP = "@ft-step "
WARNING = "@ft-warning "


def _emit(prefix: str, text: str) -> None:
    """One write per line: lines of several processes sharing the pipe do not interleave."""
    sys.stdout.write(f"{prefix}{text}\n")
    sys.stdout.flush()


def _rows_trace(folder: str | None, rank: int):
    """For tests: each rank appends (step, micro-batch, rows) as JSON lines."""
    if not folder:
        return None
    path = Path(folder) / f"rows-rank{rank}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)

    def record(step: int, micro: int, rows: list[int]) -> None:
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, "micro": micro, "rows": rows}) + "\n")

    return record


def run(job: dict) -> int:
    # Library deprecation notices, once per process, would only crowd the run's log.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    from datasets import load_from_disk

    from ft_pipeline.lib.model.heads import head_for, rows_for
    from ft_pipeline.lib.model.modeling import pick_dtype
    from ft_pipeline.lib.training import distributed
    from ft_pipeline.lib.training.training import train_adapter
    from ft_pipeline.recipe import parse_recipe

    # ft_pipeline's own log lines (how FSDP cut the model, ...) go to the parent, plainly.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("ft_pipeline").addHandler(handler)
    logging.getLogger("ft_pipeline").setLevel(logging.INFO)

    recipe = parse_recipe(job["recipe"], origin="training job")
    par = distributed.join(job.get("device", "auto"), recipe.training.distributed.strategy)
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    where = f"worker rank {par.rank}/{par.world} on {par.device}"
    _emit("", f"{where}, {par.strategy if par.active else 'single'}, {threads} threads")
    try:
        dataset = load_from_disk(job["dataset"])
        head = head_for(recipe)
        train = rows_for(dataset["train"].select(job["train_rows"]), head)
        val = rows_for(dataset["validation"].select(job["val_rows"]), head)
        result = train_adapter(
            job["base_dir"],
            train,
            val,
            recipe,
            Path(job["out_dir"]),
            pad_id=job["pad_id"],
            device=par.device,
            dtype=pick_dtype(recipe.training.precision, par.device),
            on_log=lambda s: _emit(STEP, json.dumps(dataclasses.asdict(s))),
            fail_after_steps=job.get("fail_after_steps"),
            on_warning=lambda text: _emit(WARNING, text.replace("\n", " ")),
            on_rows=_rows_trace(job.get("trace_rows"), par.rank),
        )
        if par.main:
            result_text = json.dumps(dataclasses.asdict(result), default=str)
            atomic.write_text(Path(job["result"]), result_text)
    finally:
        par.leave()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("job", type=Path, help="the job file written by launch.write_job")
    args = parser.parse_args(argv)
    return run(json.loads(args.job.read_text()))


if __name__ == "__main__":
    sys.exit(main())
