"""The classical side of a labelled evaluation: the TF-IDF baseline trained on the rows the
adapter saw (logistic regression; one-vs-rest for multilabel, its thresholds tuned on the
validation rows like the adapter's), and the statistics that set the models side by side.
"""

from __future__ import annotations

from ft_pipeline.lib.data.label_sets import multi_hot
from ft_pipeline.lib.evaluation.baseline import (
    predict_ovr_scores,
    predict_with_scores,
    train_ovr_baseline,
    train_tfidf_baseline,
)
from ft_pipeline.lib.evaluation.baseline_cache import cached, tfidf_key
from ft_pipeline.lib.evaluation.model_scores import BASE, TUNED
from ft_pipeline.lib.evaluation.promotion import paired_gain
from ft_pipeline.lib.evaluation.task_metrics import (
    f1_interval,
    label_metrics,
    references,
    slice_scores,
)
from ft_pipeline.lib.model.thresholds import predict_sets, tune_thresholds
from ft_pipeline.lib.training.job import train_indices, val_indices
from ft_pipeline.recipe import Recipe

TFIDF = "tfidf"


def _tfidf(train, val, test, recipe: Recipe) -> list:
    if recipe.task == "multilabel":  # one-vs-rest, thresholds tuned like the adapter's
        pipeline = train_ovr_baseline(
            train["text"], references(train, recipe), recipe.labels, recipe.training.seed
        )
        truth = multi_hot(references(val, recipe), recipe.labels)
        cut = tune_thresholds(predict_ovr_scores(pipeline, val["text"]), truth)
        return predict_sets(predict_ovr_scores(pipeline, test["text"]), cut, recipe.labels)
    pipeline = train_tfidf_baseline(train["text"], train["label"], seed=recipe.training.seed)
    return predict_with_scores(pipeline, test["text"], recipe.labels)[0]


def classical_and_stats(result, outputs, dataset, test, recipe: Recipe, cached_in, log) -> None:
    """The TF-IDF baseline's predictions and metrics, the paired gains over the base model
    and the baseline, the fine-tuned model's interval and the per-slice scores, into
    `result` (`outputs` gains the baseline's predictions)."""
    train = dataset["train"].select(train_indices(dataset, recipe))
    val = dataset["validation"].select(val_indices(dataset, recipe))
    multi = val if recipe.task == "multilabel" else None  # its thresholds are tuned on val
    path = cached_in / f"tfidf-{tfidf_key(recipe, train, test, multi)}.json"
    outputs[TFIDF] = cached(path, lambda: _tfidf(train, val, test, recipe), log)
    refs = references(test, recipe)
    result["models"][TFIDF] = label_metrics(recipe, refs, outputs[TFIDF])
    ev = recipe.evaluation
    result["gain"] = paired_gain(recipe, refs, outputs[BASE], outputs[TUNED])
    # Fine-tuned minus TF-IDF on the same rows: is the LLM worth it over the classical model?
    result["baseline_gain"] = paired_gain(recipe, refs, outputs[TFIDF], outputs[TUNED])
    result["interval"] = f1_interval(
        recipe,
        refs,
        outputs[TUNED],
        samples=ev.bootstrap_samples,
        seed=recipe.split.seed,
        confidence=ev.confidence,
    )
    result["slices"] = {
        name: slice_scores(recipe, refs, pred, test["source"]) for name, pred in outputs.items()
    }
