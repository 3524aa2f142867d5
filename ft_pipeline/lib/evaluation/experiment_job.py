"""Gather an experiment's evaluated variants from the state folder and compare them."""

from __future__ import annotations

from collections.abc import Callable

from ft_pipeline.lib.data.tokenized import load_tokenized
from ft_pipeline.lib.evaluation.baseline_cache import cached, tfidf_key
from ft_pipeline.lib.evaluation.experiment import (
    check_same_rows,
    classical_references,
    compare,
    rows_digest,
    variant_score,
)
from ft_pipeline.lib.evaluation.job import BASELINES_DIR, read_result, test_digest, test_indices
from ft_pipeline.lib.state.paths import StatePaths
from ft_pipeline.lib.training.adapter_info import read_info
from ft_pipeline.recipe import Recipe


def compare_variants(
    paths: StatePaths, recipe: Recipe, keys: dict[str, str], log: Callable[[str], None]
) -> dict:
    """The comparison of every variant's latest adapter (`keys`: variant -> adapter key).

    Refuses results scored on other test rows than today's datasets hold (a stale
    evaluation) or on different rows from one variant to the next.
    """
    datasets: dict[str, object] = {}
    results, scores, digests = {}, [], {}
    for variant in recipe.variants():
        key, vr = keys[variant.name], variant.recipe
        result = read_result(paths.reports(recipe.name) / key)
        info = read_info(paths.adapters(recipe.name) / key)
        if result is None or info is None:
            raise ValueError(
                f"variant {variant.name}: adapter {key} has no evaluation result; "
                "materialize evaluation_report for this variant"
            )
        if vr.dataset_name not in datasets:
            datasets[vr.dataset_name] = load_tokenized(paths.tokenized(vr.dataset_name))[0]
        dataset = datasets[vr.dataset_name]
        if result.get("test_digest") != test_digest(dataset, vr):
            raise ValueError(
                f"variant {variant.name}: its evaluation scored other test rows than "
                f"{vr.dataset_name} holds today; rematerialize its evaluation_report"
            )
        test = dataset["test"].select(test_indices(dataset, vr))
        digests[variant.name] = rows_digest(test["dedup_key"][: len(result["references"])])
        results[variant.name] = result
        scores.append(variant_score(variant, key, result, info, vr))
    check_same_rows(digests)
    tfidf = None
    if recipe.task == "classification":
        dataset = (
            datasets.get(recipe.dataset_name)
            or load_tokenized(paths.tokenized(recipe.dataset_name))[0]
        )
        train, test = dataset["train"], dataset["test"].select(test_indices(dataset, recipe))
        refs = next(iter(results.values()))["references"]
        path = (
            paths.reports(recipe.name)
            / BASELINES_DIR
            / f"tfidf-all-{tfidf_key(recipe, train, test)}.json"
        )
        log(f"TF-IDF reference on all {len(train)} training rows")
        tfidf = cached(
            path,
            lambda: classical_references(recipe, train["text"], train["label"], test["text"], refs),
            log,
        )
    return compare(recipe, scores, results, tfidf)
