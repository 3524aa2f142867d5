"""Recipe sweep: which SmolLM2 classifier recipe beats TF-IDF on the same rows, at what cost.

Each variant changes the shipped recipe (`recipes/tweet_sentiment.yaml`) in a few fields
(rows, rank, target modules, learning rates, epochs), trains the adapter, and scores it on
the same held-out test rows; TF-IDF + logistic regression is trained on exactly the same
training rows. Prints a JSON line per variant and a table; appends to
`bench/results/recipe_sweep.jsonl`.

    .venv/bin/python bench/recipe_sweep.py                       # the default variants
    .venv/bin/python bench/recipe_sweep.py --variant "big:max_train_rows=3000,r=32"
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from _common import MODELS_DIR as MODELS
from _common import RESULTS_DIR, ROOT, clean_tweets
from quality_vs_cost import train_timed

from ft_pipeline.lib.data.tokenized import build_tokenized
from ft_pipeline.lib.evaluation import metrics as M
from ft_pipeline.lib.evaluation.baseline import predict_with_scores, train_tfidf_baseline
from ft_pipeline.lib.evaluation.job import test_indices
from ft_pipeline.lib.model.base_models import load_tokenizer, resolve_base_model
from ft_pipeline.lib.model.heads import classifier_probs, load_classifier
from ft_pipeline.lib.model.modeling import pick_device, pick_dtype
from ft_pipeline.recipe import Recipe, load_recipe

RECIPE = ROOT / "recipes" / "tweet_sentiment.yaml"
SECTIONS = {"r": "lora", "alpha": "lora", "target_modules": "lora", "dropout": "lora"}
DEFAULT_VARIANTS = [
    "shipped:",
    "head_lr:head_learning_rate=5e-3",
    "head_lr_3000:head_learning_rate=5e-3,max_train_rows=3000",
    "all_linear:head_learning_rate=5e-3,target_modules=all-linear",
    "lr1e-3:head_learning_rate=5e-3,learning_rate=1e-3",
]


def parse_variant(spec: str, recipe: Recipe) -> tuple[str, Recipe]:
    """`name:key=value,...` -> a recipe with those training/lora fields changed."""
    name, _, body = spec.partition(":")
    updates: dict[str, dict] = {"training": {}, "lora": {}}
    for item in filter(None, body.split(",")):
        key, _, raw = item.partition("=")
        value = raw if raw == "all-linear" else json.loads(raw)
        updates[SECTIONS.get(key, "training")][key] = value
    data = recipe.model_dump()
    for section, fields in updates.items():
        data[section].update(fields)
    return name, Recipe.model_validate(data)


def run_variant(name, recipe, dataset, tokenizer, base_dir, work, test) -> dict:
    device = pick_device()
    dtype = pick_dtype(recipe.training.precision, device)
    result, train, _, cpu, wall = train_timed(recipe, dataset, tokenizer, base_dir, work / name)
    from peft import PeftModel

    torch.manual_seed(recipe.training.seed)
    base = load_classifier(base_dir, recipe.labels, device, tokenizer.pad_token_id)
    model = PeftModel.from_pretrained(base, str(result.adapter_dir))
    probs = classifier_probs(model, test["input_ids"], tokenizer.pad_token_id, device, dtype)
    pred = [recipe.labels[i] for i in probs.argmax(axis=1)]
    f1 = M.classification_metrics(test["label"], pred, recipe.labels)["macro_f1"]
    tfidf = train_tfidf_baseline(train["text"], train["label"], seed=recipe.training.seed)
    tf_pred, _ = predict_with_scores(tfidf, test["text"], recipe.labels)
    tf_f1 = M.classification_metrics(test["label"], tf_pred, recipe.labels)["macro_f1"]
    t, lora = recipe.training, recipe.lora
    return {
        "variant": name,
        "train_rows": len(train),
        "epochs": t.epochs,
        "r": lora.r,
        "target_modules": lora.target_modules,
        "learning_rate": t.learning_rate,
        "head_learning_rate": t.head_learning_rate,
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        "best_val_loss": round(result.best_val_loss, 4),
        "macro_f1": round(f1, 4),
        "tfidf_macro_f1": round(tf_f1, 4),
        "beats_tfidf": f1 > tf_f1,
        "train_wall_minutes": round(wall / 60, 2),
        "train_cpu_minutes": round(cpu / 60, 2),
        "test_rows": len(test),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", action="append", help="name:key=value,... (repeatable)")
    parser.add_argument("--test-rows", type=int, default=1000)
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args()
    shipped = load_recipe(RECIPE)
    shipped = shipped.model_copy(
        update={
            "evaluation": shipped.evaluation.model_copy(update={"max_test_rows": args.test_rows})
        }
    )
    tokenizer = load_tokenizer(shipped.model.base, MODELS)
    dataset = build_tokenized(clean_tweets(shipped), shipped, tokenizer).dataset
    test = dataset["test"].select(test_indices(dataset, shipped))
    base_dir = resolve_base_model(shipped.model.base, MODELS, weights=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.variant or DEFAULT_VARIANTS:
            name, recipe = parse_variant(spec, shipped)
            row = run_variant(name, recipe, dataset, tokenizer, base_dir, Path(tmp), test)
            rows.append(row)
            print(json.dumps(row), flush=True)
            with (out / "recipe_sweep.jsonl").open("a") as f:
                f.write(json.dumps(row) + "\n")
    print(f"\n{'variant':<14} {'rows':>5} {'F1':>7} {'TF-IDF':>7} {'wall min':>8}")
    for r in rows:
        print(
            f"{r['variant']:<14} {r['train_rows']:>5} {r['macro_f1']:>7.4f} "
            f"{r['tfidf_macro_f1']:>7.4f} {r['train_wall_minutes']:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
