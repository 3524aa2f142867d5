"""Promotion on paired evidence: the challenger against the base model and the champion,
each scored on the same test rows.

The current champion is re-scored on today's test rows through the model the registry
serves (`models:/<name>/<version>`), cached by version and test-row digest. Both
comparisons are paired bootstraps of the gate metric's difference over those rows (macro-F1
for classification and multilabel, mean token F1 for instruction and chat). The gate passes when

- the lower CI bound of (challenger - base) is at least `evaluation.min_f1_gain`, and
- the lower CI bound of (challenger - champion) is above `-evaluation.max_regression`;
- with `evaluation.must_beat_baseline`, the lower bound of (challenger - TF-IDF) is above 0.

Every task's champion is re-scored: a chat champion is asked each test row's conversation
so far (the served model takes it as a JSON list of messages in `text`, rendered with the
same template as evaluation's prompts). A champion that cannot be re-scored (its registered
model no longer loads) is compared by the metric it was registered with, against this
model's interval, and the report says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from datasets import DatasetDict

from ft_pipeline.lib.evaluation import metrics as M
from ft_pipeline.lib.evaluation.task_metrics import f1_gain, is_labelled, label_metrics
from ft_pipeline.lib.state import atomic
from ft_pipeline.recipe import Recipe

BASE, TUNED, CHAMPION = "base", "fine-tuned", "champion"


def primary_metric(recipe: Recipe) -> str:
    return "macro_f1" if is_labelled(recipe) else "token_f1"


def margin(recipe: Recipe) -> float:
    """`evaluation.min_f1_gain`, or its default for the task (0 for classification, 0.02
    token F1 for generation, where a gain of a few thousandths is noise)."""
    chosen = recipe.evaluation.min_f1_gain
    if chosen is not None:
        return chosen
    return 0.0 if is_labelled(recipe) else 0.02


def paired_gain(recipe: Recipe, refs: list, pred_a: list, pred_b: list) -> dict[str, Any]:
    """The gate metric of b minus a on the same rows, with its paired-bootstrap interval."""
    ev = recipe.evaluation
    opts = {"samples": ev.bootstrap_samples, "seed": recipe.split.seed, "confidence": ev.confidence}
    if is_labelled(recipe):
        return f1_gain(recipe, refs, pred_a, pred_b, **opts)
    return M.bootstrap_mean_gain(
        M.token_f1_rows(pred_a, refs), M.token_f1_rows(pred_b, refs), **opts
    )


def champion_inputs(dataset: DatasetDict, recipe: Recipe, rows: list[int]) -> list[str]:
    """What the served champion is asked for these test rows: the cleaned input text, or
    for chat the conversation before the answer, as the JSON list the server accepts."""
    test = dataset["test"].select(rows)
    if recipe.task == "chat":
        return [json.dumps(json.loads(m)[:-1]) for m in test["messages"]]
    return list(test["text"])


def rescore_champion(
    uri: str, name: str, version: str, inputs: list[str], cache: Path, log: Callable[[str], None]
) -> list:
    """The served champion's answers (labels or responses) to `inputs`, cached in `cache`."""
    if cache.is_file():
        return json.loads(cache.read_text())
    import mlflow
    import pandas as pd

    from ft_pipeline.lib.deployment.job import fluent_tracking_uri

    log(f"re-scoring champion {name} version {version} on {len(inputs)} test rows")
    with fluent_tracking_uri(uri):
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    out = model.predict(pd.DataFrame({"text": inputs}))
    if "labels" in out:  # multilabel: each row's label set as a JSON list
        answers = [json.loads(v) for v in out["labels"]]
    else:
        answers = [str(v) for v in (out["label"] if "label" in out else out["response"])]
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(cache, json.dumps(answers))
    return answers


def attach_champion(
    result: dict[str, Any], recipe: Recipe, version: str, answers: list[str] | None
) -> None:
    """The champion's metrics on today's rows and the paired gain over it, into `result`
    (replacing an earlier champion's); `answers` None: not re-scored."""
    result["champion_version"] = version
    if answers is None:
        return
    refs = result["references"]
    if is_labelled(recipe):
        scores = label_metrics(recipe, refs, answers)
    else:
        scores = {
            "exact_match": M.exact_match(answers, refs),
            "token_f1": M.token_f1(answers, refs),
        }
    result["models"][CHAMPION] = scores
    result["champion_gain"] = paired_gain(recipe, refs, answers, result["predictions"][TUNED])


def compare_with_champion(
    result: dict[str, Any],
    recipe: Recipe,
    dataset: DatasetDict,
    rows: list[int],
    client: Any,
    uri: str,
    cache_dir: Path,
    log: Callable[[str], None],
) -> dict[str, float]:
    """Re-score the current champion on this result's test `rows` (unless it is this very
    adapter) and attach the comparison; returns the champion's registered metrics."""
    from ft_pipeline.lib.deployment import registry
    from ft_pipeline.lib.deployment.job import KEY_TAG

    result["models"].pop(CHAMPION, None)
    for stale in ("champion_gain", "champion_version", "champion_rescore_error"):
        result.pop(stale, None)
    current = registry.champion(client, recipe.model_name)
    if current is None or current.tags.get(KEY_TAG) == result.get("adapter_key"):
        return {}
    version = str(current.version)
    rows = rows[: len(result["references"])]
    inputs = champion_inputs(dataset, recipe, rows)
    cache = cache_dir / f"v{version}-{result['test_digest']}.json"
    try:
        answers = rescore_champion(uri, recipe.model_name, version, inputs, cache, log)
    except Exception as err:  # any load or predict failure: say so, fall back
        answers = None
        result["champion_rescore_error"] = f"{type(err).__name__}: {err}"
        log(
            f"champion version {version} could not be re-scored ({err}); comparing it by "
            "its registered metric"
        )
    attach_champion(result, recipe, version, answers)
    return registry.version_metrics(current)


def _ci(gain: dict[str, Any]) -> str:
    level = f"{float(gain.get('confidence', 0.95)):.0%}"
    return f"{gain['gain']:+.4f}, {level} CI {gain['low']:+.4f}..{gain['high']:+.4f}"


def gate(result: dict[str, Any], recipe: Recipe, registered: dict[str, float] | None) -> dict:
    """The promotion decision (module docstring); `registered`: the champion's metrics as
    registered, used only when it was not re-scored on today's rows."""
    metric, need = primary_metric(recipe), margin(recipe)
    models = result["models"]
    reasons: list[str] = []
    gain = result.get("gain")
    if gain is not None:
        if gain["low"] < need:
            reasons.append(
                f"{metric} gain over base ({_ci(gain)}): the lower bound is below the margin {need}"
            )
    elif models[TUNED][metric] - models[BASE][metric] < need:
        point = models[TUNED][metric] - models[BASE][metric]
        reasons.append(f"{metric} gain over base {point:+.4f} is below the margin {need}")
    against = result.get("champion_gain")
    allowed = recipe.evaluation.max_regression
    if against is not None and against["low"] <= -allowed:
        reasons.append(
            f"{metric} against champion version {result.get('champion_version')} on the same "
            f"rows ({_ci(against)}): the lower bound is at or below -max_regression ({-allowed})"
        )
    elif against is None and registered and metric in registered:
        high = result.get("interval", {}).get("high", models[TUNED][metric])
        if registered[metric] > high:
            reasons.append(
                f"champion {metric} {registered[metric]:.4f} (as registered, on its own test "
                f"rows) is above this model's {recipe.evaluation.confidence:.0%} interval "
                f"(high {high:.4f})"
            )
    beaten = result.get("baseline_gain")
    if recipe.evaluation.must_beat_baseline and beaten and beaten["low"] <= 0:
        reasons.append(
            f"must_beat_baseline: the fine-tuned model does not beat TF-IDF on the same rows "
            f"({metric} {_ci(beaten)})"
        )
    return {
        "passed": not reasons,
        "reasons": reasons,
        "metric": metric,
        "margin": need,
        "champion": registered or {},
        "champion_rescored": against is not None,
    }
