"""Evaluate base, fine-tuned and classical models on the same held-out rows.

Classification: label probabilities from one forward pass per row (no free generation),
TF-IDF + logistic regression trained on the very rows the adapter saw, bootstrap CI of the
macro-F1 gain. Multilabel: the same, with label sets cut at tuned thresholds, micro- and
macro-F1 and per-label intervals, and a one-vs-rest TF-IDF baseline (`task_metrics`).
Instruction/chat: answer loss, perplexity, exact match and token F1.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import DatasetDict

from ft_pipeline.lib.data.splits import sample_indices
from ft_pipeline.lib.evaluation import metrics as M
from ft_pipeline.lib.evaluation.baseline_cache import base_key, cached, rows_digest
from ft_pipeline.lib.evaluation.classical import TFIDF, classical_and_stats  # noqa: F401
from ft_pipeline.lib.evaluation.model_scores import BASE, TUNED, evaluate_models, score_base
from ft_pipeline.lib.evaluation.plots import plot_confusion_matrices, plot_loss_curves
from ft_pipeline.lib.evaluation.promotion import paired_gain
from ft_pipeline.lib.evaluation.report import render_report
from ft_pipeline.lib.evaluation.task_metrics import (
    is_labelled,
    label_metrics,
    references,
)
from ft_pipeline.lib.model.base_models import load_tokenizer, resolve_base_model
from ft_pipeline.lib.model.modeling import pick_device, pick_dtype
from ft_pipeline.lib.model.scoring import perplexity
from ft_pipeline.lib.model.thresholds import read_thresholds
from ft_pipeline.lib.state.fingerprint import code_fingerprint
from ft_pipeline.lib.state.tracking import Tracker, lineage_tags
from ft_pipeline.lib.training.adapter_info import history
from ft_pipeline.lib.training.job import val_indices
from ft_pipeline.lib.training.keys import base_model_hash
from ft_pipeline.recipe import Recipe

RESULT_FILE = "result.json"
REPORT_FILE = "report.md"
BASELINES_DIR = "baselines"  # beside the reports: reference outputs, reused by key
# Evaluation starts here; every project module it imports is in the evaluation key.
EVALUATION_ENTRY = "ft_pipeline.lib.evaluation.job"
EVALUATION_KEY_COVERS = (
    "adapter key; recipe sections evaluation, split, task, labels, prompt, model; the code "
    "of every module evaluation imports; a digest of the test rows scored"
)


def test_indices(dataset: DatasetDict, recipe: Recipe) -> list[int]:
    labels = dataset["test"]["label"] if recipe.task == "classification" else None
    limit = recipe.evaluation.max_test_rows
    return sample_indices(len(dataset["test"]), limit, recipe.split.seed, labels)


def test_digest(dataset: DatasetDict, recipe: Recipe) -> str:
    """A digest of the test rows the evaluation scores: their keys, labels and tokens."""
    test = dataset["test"].select(test_indices(dataset, recipe))
    return rows_digest(test, ("dedup_key", "label", "response", "input_ids"))


def evaluation_key(adapter_key: str, recipe: Recipe, digest: str, root: Path | None = None) -> str:
    """What an evaluation result is reused by (EVALUATION_KEY_COVERS); `root` is the package
    folder whose code is hashed (default: the installed one)."""
    sections = recipe.content_hash("evaluation", "split", "task", "labels", "prompt", "model")
    payload = {
        "adapter": adapter_key,
        "recipe": sections,
        "code": code_fingerprint([EVALUATION_ENTRY], root),
        "test_rows": digest,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def reusable_result(out_dir: Path, key: str) -> dict[str, Any] | None:
    """The saved result, if it was made under this evaluation key."""
    result = read_result(out_dir)
    return result if result is not None and result.get("evaluation_key") == key else None


def evaluate_or_reuse(
    adapter_dir: Path,
    recipe: Recipe,
    dataset: DatasetDict,
    models_cache: Path,
    out_dir: Path,
    *,
    log: Callable[[str], None],
    device: str = "auto",
) -> tuple[dict[str, Any], str, bool]:
    """(result, evaluation key, reused): the saved result of `out_dir` when its evaluation
    key is today's, else a new evaluation (which the caller writes with `write_report`)."""
    adapter_key, digest = adapter_dir.parent.name, test_digest(dataset, recipe)
    key = evaluation_key(adapter_key, recipe, digest)
    result = reusable_result(out_dir, key)
    if result is not None:
        log(f"reusing evaluation {key} of adapter {adapter_key}")
        return result, key, True
    if read_result(out_dir) is not None:
        log(
            f"adapter {adapter_key} was evaluated under another key (its evaluation settings, "
            f"code or test rows changed): evaluating again as {key}"
        )
    result = evaluate(adapter_dir, recipe, dataset, models_cache, out_dir, log=log, device=device)
    result.update(evaluation_key=key, test_digest=digest)
    return result, key, False


def _throttled(log: Callable[[str], None], label: str, every_s: float = 20.0):
    last = [time.monotonic()]

    def progress(done: int, total: int) -> None:
        if done == total or time.monotonic() - last[0] >= every_s:
            last[0] = time.monotonic()
            log(f"{label}: scored {done}/{total} rows")

    return progress


def evaluate(
    adapter_dir: Path,
    recipe: Recipe,
    dataset: DatasetDict,
    models_cache: Path,
    out_dir: Path,
    *,
    log: Callable[[str], None],
    device: str = "auto",
) -> dict[str, Any]:
    """Score all models, write plots + report.md + result.json into `out_dir`."""
    dev = pick_device(device)
    tokenizer = load_tokenizer(recipe.model.base, models_cache)
    ctx = {
        "device": dev,
        "dtype": pick_dtype(recipe.training.precision, dev),
        "pad": tokenizer.pad_token_id,
        "progress": None,
    }
    test = dataset["test"].select(test_indices(dataset, recipe))
    val = dataset["validation"].select(val_indices(dataset, recipe))
    base_dir = resolve_base_model(recipe.model.base, models_cache, weights=True)
    log(
        f"evaluating base and fine-tuned models on {len(test)} test rows ({recipe.model.head} head)"
    )
    ctx["progress"] = _throttled(log, "scoring")
    # The base model scores these rows the same way for every adapter: computed once per key.
    cached_in = out_dir.parent / BASELINES_DIR
    key = base_key(recipe, base_model_hash(recipe.model.base), test, val, dev.type)
    base = cached(
        cached_in / f"base-{key}.json",
        lambda: score_base(base_dir, recipe, tokenizer, test, val, ctx),
        log,
    )
    outputs, losses, kind = evaluate_models(
        base_dir, adapter_dir, recipe, tokenizer, test, val, ctx, base=tuple(base)
    )
    result: dict[str, Any] = {
        "recipe": recipe.name,
        "task": recipe.task,
        "head": recipe.model.head,
        "base_kind": kind,
        "labels": recipe.labels,
        "test_rows": len(test),
        "models": {},
    }
    if recipe.task == "multilabel":  # the fine-tuned model's cuts, tuned on validation
        cuts = read_thresholds(adapter_dir, recipe.labels)
        result["thresholds"] = dict(zip(recipe.labels, cuts, strict=True))
    for name in (BASE, TUNED):
        result["models"][name] = _model_metrics(recipe, test, outputs[name], losses[name])
    # What the champion comparison needs later, even when this result is reused.
    result["predictions"] = {name: list(outputs[name]) for name in (BASE, TUNED)}
    if is_labelled(recipe):
        result["references"] = references(test, recipe)
        classical_and_stats(result, outputs, dataset, test, recipe, cached_in, log)
    else:
        result["references"] = [str(r) for r in test["response"][: len(outputs[TUNED])]]
        result["gain"] = paired_gain(recipe, result["references"], outputs[BASE], outputs[TUNED])
        n = min(recipe.evaluation.sample_prompts, len(outputs[TUNED]))
        result["samples"] = answer_samples(test.select(range(n)), outputs[BASE], outputs[TUNED])
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = {"loss": plot_loss_curves(history(adapter_dir.parent), out_dir / "loss_curves.png")}
    if recipe.task == "classification":
        matrices = {k: v["confusion_matrix"] for k, v in result["models"].items()}
        plots["confusion"] = plot_confusion_matrices(
            matrices, recipe.labels, out_dir / "confusion_matrices.png"
        )
    result["plots"] = {k: Path(v).name for k, v in plots.items()}
    return result


def _model_metrics(recipe: Recipe, test, outputs: list, loss: float) -> dict[str, Any]:
    """One model's metrics on the test rows, with its validation loss (and perplexity)."""
    if is_labelled(recipe):
        metrics = label_metrics(recipe, references(test, recipe), outputs)
    else:
        refs = list(test["response"][: len(outputs)])
        metrics = {
            "exact_match": M.exact_match(outputs, refs),
            "token_f1": M.token_f1(outputs, refs),
            "n": len(refs),
        }
    # Perplexity only means something for the LM head's token-level loss.
    ppl = perplexity(loss) if recipe.model.head == "lm" else None
    return {**metrics, "val_loss": loss, "perplexity": ppl}


def write_report(result: dict[str, Any], out_dir: Path) -> Path:
    """report.md and result.json; returns the report path."""
    (out_dir / RESULT_FILE).write_text(json.dumps(result, indent=2, default=float))
    report = out_dir / REPORT_FILE
    report.write_text(render_report(result))
    return report


def read_result(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / RESULT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def log_evaluation(
    tracker: Tracker,
    recipe: Recipe,
    result: dict[str, Any],
    info: dict[str, Any],
    out_dir: Path,
    tags: dict[str, str],
) -> str:
    """An MLflow run with every model's metrics, the gate and the report folder."""
    run_tags = {
        **tags,
        **lineage_tags(recipe.name, recipe.content_hash(), info["data_version"], info["key"]),
        "ft_pipeline.train_run_id": info["mlflow_run_id"],
    }
    with tracker.run(f"evaluate-{recipe.name}-{info['key']}", run_tags) as run_id:
        flat = {
            f"{model}.{name}": value
            for model, values in result["models"].items()
            for name, value in values.items()
            if isinstance(value, int | float)
        }
        tracker.log_metrics(run_id, {**flat, "gate_passed": float(result["gate"]["passed"])})
        tracker.log_artifacts(run_id, out_dir, "evaluation")
    return run_id


def _prompt_of(row: dict[str, Any]) -> str:
    """The prompt a generation row asks: its input (`text`, the cleaned prompt), or a
    chat's last user message."""
    for column in ("text", "prompt"):
        if row.get(column):
            return str(row[column])
    users = [m.get("content", "") for m in row.get("messages") or [] if m.get("role") == "user"]
    return str(users[-1]) if users else ""


def answer_samples(rows: Any, base: Sequence[str], tuned: Sequence[str]) -> list[dict[str, str]]:
    """Prompt, reference, base and fine-tuned answer of the first rows, side by side."""
    return [
        {
            "prompt": _prompt_of(row),
            "reference": str(row.get("response") or ""),
            "base": str(base[i]),
            "fine_tuned": str(tuned[i]),
        }
        for i, row in enumerate(rows)
    ]
