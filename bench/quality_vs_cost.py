"""Quality vs cost: macro-F1 on one test split against CPU minutes of training.

Contenders, each at two or three training-set sizes drawn (stratified, seeded) from the same
training split, all scored on the same held-out test rows:
- TF-IDF + logistic regression (scikit-learn),
- SmolLM2-135M-Instruct, `lm` head (next-token label scoring),
- SmolLM2-135M-Instruct, `classifier` head (LoRA on the body, head trained fully),
- MiniLM-L6 (all-minilm-l6-v2), `classifier` head.

Training settings are those of the shipped recipes (recipes/tweet_sentiment*.yaml); only
`training.max_train_rows` changes. Prints a table and JSON lines, writes a PNG plot.

    .venv/bin/python bench/quality_vs_cost.py                 # about 25 minutes on 2 cores
    .venv/bin/python bench/quality_vs_cost.py --quick         # smaller sizes, a smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ft_pipeline.lib.data.cleaning import clean_frame  # noqa: E402
from ft_pipeline.lib.data.readers import read_source  # noqa: E402
from ft_pipeline.lib.data.sources import BUNDLED_TWEETS, resolve  # noqa: E402
from ft_pipeline.lib.data.tokenized import build_tokenized  # noqa: E402
from ft_pipeline.lib.evaluation import metrics as M  # noqa: E402
from ft_pipeline.lib.evaluation.baseline import predict_with_scores, train_tfidf_baseline  # noqa: E402
from ft_pipeline.lib.evaluation.job import test_indices  # noqa: E402
from ft_pipeline.lib.evaluation.model_scores import BASE, TUNED, evaluate_models  # noqa: E402
from ft_pipeline.lib.model.base_models import load_tokenizer, resolve_base_model  # noqa: E402
from ft_pipeline.lib.model.heads import head_for, rows_for  # noqa: E402
from ft_pipeline.lib.model.modeling import pick_device, pick_dtype  # noqa: E402
from ft_pipeline.lib.training.job import train_indices, val_indices  # noqa: E402
from ft_pipeline.lib.training.training import train_adapter  # noqa: E402
from ft_pipeline.recipe import Recipe, load_recipe  # noqa: E402

LM_RECIPE = ROOT / "recipes" / "tweet_sentiment.yaml"
ENCODER_RECIPE = ROOT / "recipes" / "tweet_sentiment_encoder.yaml"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def contenders(sizes_lm: list[int], sizes_enc: list[int]) -> list[tuple[str, Recipe, list[int]]]:
    lm = load_recipe(LM_RECIPE)
    classifier = lm.model_copy(update={"model": lm.model.model_copy(update={"head": "classifier"})})
    return [
        ("SmolLM2 lm", lm, sizes_lm),
        ("SmolLM2 classifier", classifier, sizes_lm),
        ("MiniLM classifier", load_recipe(ENCODER_RECIPE), sizes_enc),
    ]


def with_rows(recipe: Recipe, n: int) -> Recipe:
    training = recipe.training.model_copy(update={"max_train_rows": n})
    return recipe.model_copy(update={"training": training})


def run_model(name, recipe, clean, models_dir, work, test_rows, report) -> None:
    """Tokenize for this model/head, then train and evaluate at each size."""
    recipe = recipe.model_copy(
        update={"evaluation": recipe.evaluation.model_copy(update={"max_test_rows": test_rows})}
    )
    tokenizer = load_tokenizer(recipe.model.base, models_dir)
    dataset = build_tokenized({BUNDLED_TWEETS: clean}, recipe, tokenizer).dataset
    base_dir = resolve_base_model(recipe.model.base, models_dir, weights=True)
    device = pick_device()
    dtype = pick_dtype(recipe.training.precision, device)
    for n in report["sizes"][name]:
        r = with_rows(recipe, n)
        out_dir = work / f"{name.replace(' ', '_')}-{n}"
        result, _, val, cpu, wall = train_timed(r, dataset, tokenizer, base_dir, out_dir)
        test = dataset["test"].select(test_indices(dataset, r))
        ctx = {"device": device, "dtype": dtype, "pad": tokenizer.pad_token_id, "progress": None}
        outputs, _, _ = evaluate_models(base_dir, result.adapter_dir, r, tokenizer, test, val, ctx)
        f1 = M.classification_metrics(test["label"], outputs[TUNED], r.labels)["macro_f1"]
        base_f1 = M.classification_metrics(test["label"], outputs[BASE], r.labels)["macro_f1"]
        emit(
            report,
            {
                "model": name,
                "train_rows": n,
                "steps": result.steps,
                "macro_f1": round(f1, 4),
                "base_macro_f1": round(base_f1, 4),
                "cpu_minutes": round(cpu / 60, 2),
                "wall_minutes": round(wall / 60, 2),
                "tokens_per_s": round(result.tokens_per_s),
                "test_rows": len(test),
            },
        )


def train_timed(recipe: Recipe, dataset, tokenizer, base_dir, out_dir: Path):
    """Train on the recipe's sample of the training split: (result, train, val, CPU s, wall s)."""
    head, device = head_for(recipe), pick_device()
    dtype = pick_dtype(recipe.training.precision, device)
    train = dataset["train"].select(train_indices(dataset, recipe))
    val = dataset["validation"].select(val_indices(dataset, recipe))
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    result = train_adapter(
        base_dir,
        rows_for(train, head),
        rows_for(val, head),
        recipe,
        out_dir,
        pad_id=tokenizer.pad_token_id,
        device=device,
        dtype=dtype,
    )
    return result, train, val, cpu_seconds() - cpu0, time.monotonic() - wall0


def run_tfidf(recipe, clean, sizes, test_rows, report) -> None:
    recipe = recipe.model_copy(
        update={"evaluation": recipe.evaluation.model_copy(update={"max_test_rows": test_rows})}
    )

    # TF-IDF needs no model tokenizer; what matters is the same split and the same rows.
    dataset = build_tokenized(
        {BUNDLED_TWEETS: clean},
        recipe.model_copy(update={"model": recipe.model.model_copy(update={"head": "classifier"})}),
        _Tok(),
    ).dataset
    test = dataset["test"].select(test_indices(dataset, recipe))
    for n in sizes:
        r = with_rows(recipe, n)
        train = dataset["train"].select(train_indices(dataset, r))
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        pipeline = train_tfidf_baseline(train["text"], train["label"], seed=r.training.seed)
        cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
        pred, _ = predict_with_scores(pipeline, test["text"], r.labels)
        f1 = M.classification_metrics(test["label"], pred, r.labels)["macro_f1"]
        emit(
            report,
            {
                "model": "TF-IDF + LR",
                "train_rows": len(train),
                "steps": 0,
                "macro_f1": round(f1, 4),
                "base_macro_f1": None,
                "cpu_minutes": round(cpu / 60, 3),
                "wall_minutes": round(wall / 60, 3),
                "tokens_per_s": None,
                "test_rows": len(test),
            },
        )


class _Tok:
    """A stand-in tokenizer for the TF-IDF split: whitespace tokens, no special tokens."""

    def __call__(self, texts, add_special_tokens=True, truncation=False, max_length=None):
        ids = [list(range(len(t.split()))) for t in texts]
        return {"input_ids": [x[:max_length] if truncation else x for x in ids]}


def emit(report: dict, row: dict) -> None:
    report["rows"].append(row)
    print(json.dumps(row), flush=True)


def print_table(rows: list[dict]) -> None:
    head = f"{'model':<20} {'rows':>6} {'macro-F1':>9} {'CPU min':>8} {'wall min':>9} {'tok/s':>7}"
    print("\n" + head + "\n" + "-" * len(head))
    for r in rows:
        tps = "" if r["tokens_per_s"] is None else str(r["tokens_per_s"])
        print(
            f"{r['model']:<20} {r['train_rows']:>6} {r['macro_f1']:>9.4f} "
            f"{r['cpu_minutes']:>8.2f} {r['wall_minutes']:>9.2f} {tps:>7}"
        )


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in dict.fromkeys(r["model"] for r in rows):
        pts = sorted(
            (max(r["cpu_minutes"], 0.001), r["macro_f1"], r["train_rows"])
            for r in rows
            if r["model"] == model
        )
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=model)
        for x, y, n in pts:
            ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("CPU minutes of training (log scale; labels: training rows)")
    ax.set_ylabel("macro-F1 on the test split")
    ax.set_title("Quality vs cost, bundled tweets, 2-core CPU")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--only", help="run only contenders whose name contains this")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    sizes_lm, sizes_enc = ([64, 128], [64, 256]) if args.quick else ([500, 1500], [500, 1500, 6000])
    sizes_tfidf = [64, 256] if args.quick else [500, 1500, 6000, 28000]
    test_rows = 200 if args.quick else args.test_rows
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lm_recipe = load_recipe(LM_RECIPE)
    source = resolve(BUNDLED_TWEETS, lm_recipe, ROOT, Path("/nonexistent"))
    clean = clean_frame(read_source(source), lm_recipe, source.columns, source.key).kept
    report: dict = {"rows": [], "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models_dir = ROOT / ".ft_home" / "models"  # reuse the converted SmolLM2 when present
        if not args.only or "tf" in args.only.lower():
            run_tfidf(lm_recipe, clean, sizes_tfidf, test_rows, report)
        for name, recipe, sizes in contenders(sizes_lm, sizes_enc):
            if args.only and args.only.lower() not in name.lower():
                continue
            report["sizes"][name] = sizes
            run_model(name, recipe, clean, models_dir, work, test_rows, report)
    print_table(report["rows"])
    suffix = "-quick" if args.quick else ""
    (out / f"quality_vs_cost{suffix}.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in report["rows"])
    )
    plot(report["rows"], out / f"quality_vs_cost{suffix}.png")
    print(f"\nwrote {out / f'quality_vs_cost{suffix}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
