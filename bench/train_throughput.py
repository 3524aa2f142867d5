"""Training throughput: ft_pipeline's trainer against the stock transformers + peft recipe.

The same model (bundled SmolLM2-135M-Instruct, next-token `lm` route), the same training rows
of the bundled corpus (stratified, seeded), the same LoRA settings, batch size, learning rate,
schedule and number of examples (one epoch), two ways:

  stock:       `Trainer` + `get_peft_model`, float32, every row padded to the recipe's
               `max_length` (`padding="max_length"`), loss over the full sequence;
  ft_pipeline: `ft_pipeline.lib.training.training.train_adapter` (answer-only logits, length-grouped
               dynamic padding, bf16 autocast where the CPU has it).

Each runs in its own process, so peak RSS is its own. Reported: useful (non-padding) tokens
per second of training, the ratio, both validation losses after training (the same metric
for both: cross-entropy of the answer tokens on the same validation rows, fp32), peak RSS,
and the model-FLOPs utilisation of ft_pipeline's trainer against fp32 and bf16 matmul peaks
measured here in the same run (model FLOPs: 6 x non-embedding parameters x useful tokens).

    .venv/bin/python bench/train_throughput.py            # ~8 minutes on 2 cores
    .venv/bin/python bench/train_throughput.py --quick    # 64 rows, a smoke run
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from _common import MODELS_DIR as MODELS
from _common import ROOT, clean_tweets, peak_rss_gb, rows_args

from ft_pipeline.lib.data.tokenized import build_tokenized
from ft_pipeline.lib.model.base_models import load_tokenizer, resolve_base_model
from ft_pipeline.lib.model.heads import head_for, mean_loss, rows_for
from ft_pipeline.lib.model.lora import peft_config
from ft_pipeline.lib.model.modeling import IGNORE_INDEX, pick_device, pick_dtype
from ft_pipeline.lib.training.job import train_indices, val_indices
from ft_pipeline.lib.training.training import train_adapter
from ft_pipeline.recipe import Recipe, load_recipe

RECIPE = ROOT / "recipes" / "tweet_sentiment.yaml"


def bench_recipe(rows: int) -> Recipe:
    """The shipped recipe on the `lm` route, one epoch over `rows`, no mid-run evaluation."""
    r = load_recipe(RECIPE)
    training = r.training.model_copy(
        update={
            "max_train_rows": rows,
            "epochs": 1,
            "eval_every": 10_000,
            "checkpoint_every": 10_000,
            "early_stopping_patience": None,
        }
    )
    model = r.model.model_copy(update={"head": "lm"})
    return r.model_copy(update={"training": training, "model": model})


def val_loss(model, recipe: Recipe, val, pad_id: int) -> float:
    return mean_loss(head_for(recipe), model, val, pad_id, torch.device("cpu"), None)


def run_stock(base_dir: str, recipe: Recipe, train, val, pad_id: int, out: str) -> dict:
    """What the transformers/peft docs lead a user to write."""
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    t, width = recipe.training, recipe.model.max_length
    torch.manual_seed(t.seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), peft_config(recipe)
    )
    padded = {"input_ids": [], "attention_mask": [], "labels": []}
    for ids, _ in train:
        pad = width - len(ids)
        padded["input_ids"].append(list(ids) + [pad_id] * pad)
        padded["attention_mask"].append([1] * len(ids) + [0] * pad)
        padded["labels"].append(list(ids) + [IGNORE_INDEX] * pad)  # full-sequence loss
    args = TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        num_train_epochs=1,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # a float in [0, 1) is a ratio in transformers 5
        weight_decay=0.0,
        max_grad_norm=1.0,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        seed=t.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict(padded))
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    return {"seconds": seconds, "val_loss": val_loss(model, recipe, val, pad_id)}


def run_ours(base_dir: str, recipe: Recipe, train, val, pad_id: int, out: str) -> dict:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    device = pick_device()
    dtype = pick_dtype(recipe.training.precision, device)
    started = time.monotonic()
    result = train_adapter(
        base_dir, train, val, recipe, Path(out), pad_id=pad_id, device=device, dtype=dtype
    )
    seconds = time.monotonic() - started
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(result.adapter_dir))
    return {
        "seconds": seconds,
        "loop_seconds": result.seconds,  # optimizer steps only, without the initial validation
        "val_loss": val_loss(model, recipe, val, pad_id),
        "autocast": str(dtype),
    }


def child(which: str, *args) -> dict:
    result = (run_stock if which == "stock" else run_ours)(*args)
    return {**result, "peak_rss_gib": round(peak_rss_gb(), 2), "threads": torch.get_num_threads()}


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Sustained FLOP/s of one n x n matmul in `dtype` on this machine."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - started)


def non_embedding_params(base_dir: str) -> int:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    embedding = model.get_input_embeddings().weight.numel()
    return sum(p.numel() for p in model.parameters()) - embedding


def main() -> int:
    args = rows_args(__doc__, 512, 64)
    rows = args.rows
    recipe = bench_recipe(rows)
    tokenizer = load_tokenizer(recipe.model.base, MODELS)
    dataset = build_tokenized(clean_tweets(recipe), recipe, tokenizer).dataset
    head = head_for(recipe)
    train = rows_for(dataset["train"].select(train_indices(dataset, recipe)), head)
    val = rows_for(dataset["validation"].select(val_indices(dataset, recipe)), head)
    base_dir = str(resolve_base_model(recipe.model.base, MODELS, weights=True))
    pad, useful = tokenizer.pad_token_id, sum(len(ids) for ids, _ in train)

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for which in ("stock", "ft_pipeline"):
            # a fresh process each: peak RSS and allocator state are the variant's own
            with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
                job = pool.submit(child, which, base_dir, recipe, train, val, pad, f"{tmp}/{which}")
                results[which] = job.result()
            tps = useful / results[which]["seconds"]
            results[which]["useful_tokens_per_s"] = round(tps, 1)
            print(f"{which}: {json.dumps(results[which])}", file=sys.stderr, flush=True)

    stock, ours = results["stock"], results["ft_pipeline"]
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    model_flops = 6 * non_embedding_params(base_dir) * ours["useful_tokens_per_s"]
    speedup = ours["useful_tokens_per_s"] / stock["useful_tokens_per_s"]
    loss_gap = ours["val_loss"] / stock["val_loss"] - 1
    report = {
        "bench": "train_throughput",
        "rows": rows,
        "useful_tokens": useful,
        "stock": stock,
        "ft_pipeline": ours,
        "speedup": round(speedup, 2),
        "val_loss_gap": round(loss_gap, 4),
        "matmul_peak_gflops": {k: round(v / 1e9, 1) for k, v in peaks.items()},
        "mfu": {k: round(model_flops / v, 4) for k, v in peaks.items()},
        "targets": {
            "speedup>=3": speedup >= 3,
            "val_loss_within_2pct": loss_gap <= 0.02,
            "peak_rss<4GiB": ours["peak_rss_gib"] < 4,
        },
    }
    print(json.dumps(report))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    with (out / f"train_throughput{suffix}.jsonl").open("a") as f:
        f.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
