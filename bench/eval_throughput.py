"""Evaluation throughput: free generation vs label scoring, on the same test rows.

The zero-shot base model (bundled SmolLM2-135M-Instruct, `lm` head: the recipe's system
prompt and template through the chat template, generation prompt included) classifies the
same stratified test rows of the bundled tweet corpus two ways, in one run:
- generate: greedy `model.generate` (ft_pipeline.lib.model.scoring.generate_answers, left-padded
  batches, a few new tokens), then the first label word (or recipe alias) found in the
  text, case-insensitive; text without one counts as wrong and is reported as unparseable;
- scoring: ft_pipeline.lib.model.scoring.score_labels, what the pipeline's evaluation uses (one
  forward pass, the LM head applied at the last prompt position only), by default with the
  shared-prefix KV cache (the prompts' common tokens, system prompt and chat header, run
  once per call and reused; each batch here is one call, so the prefix is run once a batch);
- scoring_no_prefix_cache: the same with `prefix_cache=False` (whole prompts every batch).
All run on the same length-sorted batches (interleaved batch by batch, the order rotating,
so load from other processes hits them alike), the same autocast dtype (the recipe's
precision), under
`torch.inference_mode()`, after a warm-up on a few rows. Wall and CPU time are both kept.
Also timed: one `generate` call per row (how a text-generation pipeline is usually run) on
the first 64 rows, as a second generation rate.
Targets from the issue: scoring >= 10x the rows/s of generation, accuracy not lower.
Prints a table, then one JSON line (also appended to bench/results/eval_throughput.jsonl).

    .venv/bin/python bench/eval_throughput.py                 # 500 rows, ~11 min on 2 busy cores
    .venv/bin/python bench/eval_throughput.py --quick         # 48 rows, a smoke run
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from _common import MODELS_DIR, ROOT, clean_tweets, emit_json, peak_rss_gb, rows_args

from ft_pipeline.lib.data.tokenized import build_tokenized
from ft_pipeline.lib.evaluation import metrics as M
from ft_pipeline.lib.evaluation.job import test_indices
from ft_pipeline.lib.model.base_models import load_tokenizer, resolve_base_model
from ft_pipeline.lib.model.modeling import load_causal_lm, pick_device, pick_dtype
from ft_pipeline.lib.model.prefix_cache import common_prefix_length
from ft_pipeline.lib.model.scoring import generate_answers, label_tokens, prompt_ids, score_labels
from ft_pipeline.recipe import Recipe, load_recipe

RECIPE = ROOT / "recipes" / "tweet_sentiment.yaml"
WARMUP_ROWS = 8
SCORING_PATHS = ("scoring", "scoring_no_prefix_cache")
UNBATCHED_ROWS = 64


def lm_recipe(rows: int, precision: str | None) -> Recipe:
    """The shipped recipe on the `lm` head, `rows` test rows, optionally another precision."""
    r = load_recipe(RECIPE)
    training = r.training.model_copy(update={"precision": precision or r.training.precision})
    return r.model_copy(
        update={
            "model": r.model.model_copy(update={"head": "lm"}),
            "evaluation": r.evaluation.model_copy(update={"max_test_rows": rows}),
            "training": training,
        }
    )


def parse_label(text: str, recipe: Recipe) -> str | None:
    """The first label word (or alias) in `text`, case-insensitive; None when there is none."""
    words = {lab.lower(): lab for lab in recipe.labels}
    words |= {
        a.lower(): recipe.labels[recipe.labels.index(t)] for a, t in recipe.label_aliases.items()
    }
    pattern = r"\b(" + "|".join(sorted(map(re.escape, words), key=len, reverse=True)) + r")\b"
    found = re.search(pattern, text, flags=re.IGNORECASE)
    return words[found.group(1).lower()] if found else None


def generate(model, tokenizer, prompts, device, dtype, args) -> list[str]:
    with torch.inference_mode(), autocast(device, dtype):
        return generate_answers(
            model, tokenizer, prompts, device, args.max_new_tokens, batch_size=args.batch_size
        )


def score(model, tokens, prompts, pad, device, dtype, args, prefix_cache=True) -> np.ndarray:
    with torch.inference_mode():
        return score_labels(
            model, prompts, tokens, pad, device, dtype, args.batch_size, prefix_cache=prefix_cache
        )


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def measure(model, tokenizer, prompts, labels, device, dtype, args):
    """All paths over the same length-sorted batches, interleaved batch by batch (the order
    rotating) so that load from other processes hits them alike.
    Returns (texts, {scoring path: probs}, {path: [wall s, CPU s]}, per-batch prefixes)."""
    tokens, pad = label_tokens(tokenizer, labels), tokenizer.pad_token_id
    texts = [""] * len(prompts)
    probs = {name: np.zeros((len(prompts), len(labels))) for name in SCORING_PATHS}
    spent = {name: [0.0, 0.0] for name in ("generate", *SCORING_PATHS)}
    prefixes = []
    order = np.argsort([len(p) for p in prompts], kind="stable")
    for k, start in enumerate(range(0, len(prompts), args.batch_size)):
        rows = order[start : start + args.batch_size]
        chunk = [prompts[i] for i in rows]
        prefixes.append(common_prefix_length(chunk))
        paths = [
            ("generate", lambda c=chunk: generate(model, tokenizer, c, device, dtype, args)),
            ("scoring", lambda c=chunk: score(model, tokens, c, pad, device, dtype, args)),
            (
                "scoring_no_prefix_cache",
                lambda c=chunk: score(model, tokens, c, pad, device, dtype, args, False),
            ),
        ]
        for name, fn in paths[k % 3 :] + paths[: k % 3]:
            wall, cpu = time.perf_counter(), time.process_time()
            out = fn()
            spent[name][0] += time.perf_counter() - wall
            spent[name][1] += time.process_time() - cpu
            if name == "generate":
                for i, text in zip(rows, out, strict=True):
                    texts[i] = text
            else:
                probs[name][rows] = out
    return texts, probs, spent, prefixes


def add_args(parser: argparse.ArgumentParser) -> None:
    """This bench's options, beside the shared --rows/--quick/--out."""
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=5)
    choices = ["auto", "bf16", "fp32"]
    parser.add_argument("--precision", choices=choices, help="default: the recipe's")


def test_prompts(recipe: Recipe, tokenizer) -> tuple[list[list[int]], list[str]]:
    """(prompt token ids, gold labels) of the recipe's sampled test rows of the tweet corpus."""
    dataset = build_tokenized(clean_tweets(recipe), recipe, tokenizer).dataset
    test = dataset["test"].select(test_indices(dataset, recipe))
    prompts = [prompt_ids(i, lab) for i, lab in zip(test["input_ids"], test["labels"], strict=True)]
    return prompts, list(test["label"])


def unbatched_rate(model, tokenizer, prompts, device, dtype, args) -> float:
    """Rows/s of one `generate` call per row, as a text-generation pipeline does, on the
    first UNBATCHED_ROWS rows (accuracy comes from the batched run)."""
    solo = prompts[: min(UNBATCHED_ROWS, len(prompts))]
    started = time.perf_counter()
    with torch.inference_mode(), autocast(device, dtype):
        generate_answers(model, tokenizer, solo, device, args.max_new_tokens, batch_size=1)
    return len(solo) / (time.perf_counter() - started)


def main() -> int:
    """Time both paths on the test rows, print the table, append the JSON line."""
    args = rows_args(__doc__, 500, 48, add_args)
    rows = args.rows
    recipe = lm_recipe(rows, args.precision)

    tokenizer = load_tokenizer(recipe.model.base, MODELS_DIR)
    prompts, gold = test_prompts(recipe, tokenizer)
    device = pick_device()
    dtype = pick_dtype(recipe.training.precision, device)
    model = load_causal_lm(resolve_base_model(recipe.model.base, MODELS_DIR, True), device)
    measure(model, tokenizer, prompts[:WARMUP_ROWS], recipe.labels, device, dtype, args)  # warm-up
    texts, all_probs, spent, prefixes = measure(
        model, tokenizer, prompts, recipe.labels, device, dtype, args
    )
    probs, probs_plain = all_probs["scoring"], all_probs["scoring_no_prefix_cache"]

    rps_solo = unbatched_rate(model, tokenizer, prompts, device, dtype, args)  # the stock way

    parsed = [parse_label(t, recipe) for t in texts]
    pred_gen = [p or "" for p in parsed]  # "" is outside the labels: a miss
    pred_score = [recipe.labels[i] for i in probs.argmax(axis=1)]
    m_gen = M.classification_metrics(gold, pred_gen, recipe.labels)
    m_score = M.classification_metrics(gold, pred_score, recipe.labels)
    (gen_s, gen_cpu), (score_s, score_cpu) = spent["generate"], spent["scoring"]
    plain_s, plain_cpu = spent["scoring_no_prefix_cache"]
    rps_gen, rps_score = len(prompts) / gen_s, len(prompts) / score_s
    rps_plain = len(prompts) / plain_s
    pred_plain = probs_plain.argmax(axis=1)
    ratio = rps_score / rps_gen
    speed_met, acc_met = ratio >= 10, m_score["accuracy"] >= m_gen["accuracy"]
    result = {
        "bench": "eval_throughput",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": len(prompts),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "rows_per_s_generate": round(rps_gen, 2),
        "rows_per_s_scoring": round(rps_score, 2),
        "ratio": round(ratio, 2),
        "rows_per_s_generate_unbatched": round(rps_solo, 2),
        "ratio_vs_unbatched": round(rps_score / rps_solo, 2),
        "rows_per_s_scoring_no_prefix_cache": round(rps_plain, 2),
        "prefix_cache_speedup": round(rps_score / rps_plain, 2),
        "cpu_s_scoring_no_prefix_cache": round(plain_cpu, 1),
        "shared_prefix_tokens": common_prefix_length(prompts),
        "shared_prefix_tokens_per_batch_mean": round(float(np.mean(prefixes)), 1),
        "prefix_cache_max_abs_prob_diff": float(f"{np.abs(probs - probs_plain).max():.2e}"),
        "prefix_cache_prediction_mismatches": int((probs.argmax(axis=1) != pred_plain).sum()),
        "cpu_s_generate": round(gen_cpu, 1),
        "cpu_s_scoring": round(score_cpu, 1),
        "cpu_ratio": round(gen_cpu / score_cpu, 2),
        "accuracy_generate": round(m_gen["accuracy"], 4),
        "accuracy_scoring": round(m_score["accuracy"], 4),
        "macro_f1_generate": round(m_gen["macro_f1"], 4),
        "macro_f1_scoring": round(m_score["macro_f1"], 4),
        "unparseable_generations": sum(p is None for p in parsed),
        "target_ratio_10x_met": speed_met,
        "target_accuracy_not_lower_met": acc_met,
        "mean_prompt_tokens": round(float(np.mean([len(p) for p in prompts])), 1),
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "dtype": str(dtype or torch.float32).removeprefix("torch."),
        "quick": args.quick,
    }
    print_table(result, texts, parsed)
    suffix = "-quick" if args.quick else ""
    emit_json(result, Path(args.out) / f"eval_throughput{suffix}.jsonl")
    return 0


def print_table(r: dict, texts: list[str], parsed: list[str | None]) -> None:
    head = f"{'path':<10} {'rows/s':>8} {'accuracy':>9} {'macro-F1':>9}"
    print(
        f"\n{r['rows']} rows, batch {r['batch_size']}, {r['device']} {r['dtype']}, "
        f"{r['threads']} threads\n{head}\n" + "-" * len(head)
    )
    for name in ("generate", "scoring"):
        print(
            f"{name:<10} {r[f'rows_per_s_{name}']:>8.2f} {r[f'accuracy_{name}']:>9.4f} "
            f"{r[f'macro_f1_{name}']:>9.4f}"
        )
    print(
        f"scoring without the prefix cache: {r['rows_per_s_scoring_no_prefix_cache']:.2f} rows/s "
        f"(cache: {r['prefix_cache_speedup']:.2f}x; shared prefix {r['shared_prefix_tokens']} of "
        f"{r['mean_prompt_tokens']} mean prompt tokens, {r['shared_prefix_tokens_per_batch_mean']} "
        f"per batch; max prob diff {r['prefix_cache_max_abs_prob_diff']:.1e}, "
        f"{r['prefix_cache_prediction_mismatches']} prediction mismatches)"
    )
    met = {True: "met", False: "NOT met"}
    print(
        f"ratio {r['ratio']:.2f}x, CPU-time ratio {r['cpu_ratio']:.2f}x "
        f"(target >= 10x: {met[r['target_ratio_10x_met']]}); "
        f"accuracy not lower: {met[r['target_accuracy_not_lower_met']]}"
    )
    bad = [t for t, p in zip(texts, parsed, strict=True) if p is None]
    print(
        f"one generate() per row: {r['rows_per_s_generate_unbatched']:.2f} rows/s; "
        f"scoring is {r['ratio_vs_unbatched']:.2f}x that"
    )
    print(f"unparseable generations: {len(bad)}" + (f", e.g. {bad[:3]!r}" if bad else ""))


if __name__ == "__main__":
    sys.exit(main())
