"""An experiment's comparison: every variant on the same test rows, the winner by a stated
rule, a Markdown table and a plot, and MLflow runs (a parent, one child per variant).

The rule (`ft_pipeline.recipe_experiment.WINNER_RULE`): the highest lower confidence bound
of the gate metric; within `TIE` of it, the variant with the fewest training CPU-minutes.
Beside each variant: the paired gain over TF-IDF trained on *all* training rows (not the
variant's sample), so "does it beat the classical model" has one answer per variant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ft_pipeline.lib.evaluation import metrics as M
from ft_pipeline.lib.evaluation.plots import plot_variants
from ft_pipeline.lib.evaluation.promotion import TUNED, paired_gain, primary_metric
from ft_pipeline.lib.evaluation.report import markdown_table
from ft_pipeline.lib.evaluation.task_metrics import f1_interval, is_labelled
from ft_pipeline.lib.state import atomic
from ft_pipeline.lib.state.tracking import Tracker
from ft_pipeline.recipe import Recipe
from ft_pipeline.recipe_experiment import WINNER_RULE

TIE = 0.001
COMPARISON_FILE, TABLE_FILE, PLOT_FILE = "comparison.json", "comparison.md", "comparison.png"


@dataclass
class VariantScore:
    """One variant's line in the comparison."""

    name: str
    overrides: dict[str, Any]
    adapter_key: str
    score: float
    low: float
    high: float
    cpu_minutes: float
    train_rows: int
    gate_passed: bool
    gate_reasons: list[str]
    mlflow_runs: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)


def rows_digest(keys: Sequence[str]) -> str:
    """Which test rows (by their dedup keys, in order) a result scored."""
    return hashlib.sha256(json.dumps(list(keys)).encode()).hexdigest()[:16]


def score_interval(result: dict[str, Any], recipe: Recipe) -> dict[str, float]:
    """The fine-tuned model's gate metric on its test rows, with a bootstrap interval."""
    ev, refs = recipe.evaluation, result["references"]
    preds = result["predictions"][TUNED]
    opts = {"samples": ev.bootstrap_samples, "seed": recipe.split.seed, "confidence": ev.confidence}
    if is_labelled(recipe):
        found = f1_interval(recipe, refs, preds, **opts)
        return {"score": found["f1"], "low": found["low"], "high": found["high"]}
    rows = M.token_f1_rows(preds, refs)
    found = M.bootstrap_mean_gain([0.0] * len(rows), rows, **opts)  # the mean, with its CI
    return {"score": found["gain"], "low": found["low"], "high": found["high"]}


def variant_score(variant, key: str, result: dict, info: dict, recipe: Recipe) -> VariantScore:
    """A variant's line from its evaluation result and adapter info."""
    found = score_interval(result, recipe)
    cpu = float(info.get("cpu_seconds") or info.get("train_seconds") or 0.0) / 60
    return VariantScore(
        name=variant.name,
        overrides=variant.overrides,
        adapter_key=key,
        score=found["score"],
        low=found["low"],
        high=found["high"],
        cpu_minutes=cpu,
        train_rows=int(info.get("train_rows", 0)),
        gate_passed=bool(result.get("gate", {}).get("passed")),
        gate_reasons=list(result.get("gate", {}).get("reasons", [])),
        mlflow_runs={"train": info.get("mlflow_run_id", "")},
        extra={"base": result["models"].get("base", {}).get(primary_metric(recipe))},
    )


def pick_winner(scores: list[VariantScore]) -> VariantScore:
    """WINNER_RULE: the highest lower bound; within TIE of it, the cheapest variant."""
    best_low = max(s.low for s in scores)
    close = [s for s in scores if s.low >= best_low - TIE]
    return min(close, key=lambda s: (s.cpu_minutes, -s.low, s.name))


def check_same_rows(digests: dict[str, str]) -> None:
    """Every variant must have been scored on the same test rows, or nothing compares."""
    if len(set(digests.values())) > 1:
        raise ValueError(
            f"the variants were scored on different test rows ({digests}): rematerialize "
            "tokenized_dataset and every evaluation_report partition, then compare again"
        )


def classical_references(
    recipe: Recipe, train_texts, train_labels, test_texts, refs: list[str]
) -> dict[str, Any]:
    """TF-IDF + logistic regression trained on every training row, scored on the shared
    test rows (classification only)."""
    from ft_pipeline.lib.evaluation.baseline import predict_with_scores, train_tfidf_baseline

    pipeline = train_tfidf_baseline(
        list(train_texts), list(train_labels), seed=recipe.training.seed
    )
    preds, _ = predict_with_scores(pipeline, list(test_texts), recipe.labels)
    scores = M.classification_metrics(refs, preds, recipe.labels)
    return {"predictions": preds, "macro_f1": scores["macro_f1"], "train_rows": len(train_texts)}


def compare(
    recipe: Recipe,
    scores: list[VariantScore],
    results: dict[str, dict[str, Any]],
    tfidf_all: dict[str, Any] | None,
) -> dict[str, Any]:
    """The comparison: each variant's line, the winner and the reference lines."""
    winner = pick_winner(scores)
    refs = results[winner.name]["references"]
    for s in scores:
        if tfidf_all is not None:
            preds = results[s.name]["predictions"][TUNED]
            s.extra["gain_vs_tfidf_all"] = paired_gain(
                recipe, refs, tfidf_all["predictions"], preds
            )
        if s is not winner:
            s.extra["gain_vs_winner"] = paired_gain(
                recipe,
                refs,
                results[winner.name]["predictions"][TUNED],
                results[s.name]["predictions"][TUNED],
            )
    base = {s.name: s.extra.get("base") for s in scores}
    # An encoder's base is an untrained head (chance level), a decoder's answers zero-shot.
    kind = results[winner.name].get("base_kind", "")
    base_name = "untrained-head base" if "untrained" in kind else "zero-shot base"
    return {
        "recipe": recipe.name,
        "metric": primary_metric(recipe),
        "rule": WINNER_RULE,
        "winner": winner.name,
        "winner_adapter_key": winner.adapter_key,
        "winner_gate_passed": winner.gate_passed,
        "winner_gate_reasons": winner.gate_reasons,
        "test_rows": len(refs),
        "variants": [asdict(s) for s in scores],
        "references": {
            base_name: max((v for v in base.values() if v is not None), default=None),
            "TF-IDF (all training rows)": tfidf_all["macro_f1"] if tfidf_all else None,
        },
        "tfidf_train_rows": tfidf_all["train_rows"] if tfidf_all else None,
    }


def _ci(gain: dict[str, Any] | None) -> str:
    if not gain:
        return ""
    return f"{gain['gain']:+.3f} ({gain['low']:+.3f}..{gain['high']:+.3f})"


def render_table(comparison: dict[str, Any]) -> str:
    """The comparison as Markdown: one row per variant, the winner first-class."""
    import pandas as pd

    metric, lines = comparison["metric"], []
    for v in comparison["variants"]:
        lines.append(
            {
                "variant": ("**" + v["name"] + "** (winner)")
                if v["name"] == comparison["winner"]
                else v["name"],
                "knobs": ", ".join(f"{k}={val}" for k, val in v["overrides"].items()) or "-",
                metric: f"{v['score']:.4f}",
                "CI": f"{v['low']:.4f}..{v['high']:.4f}",
                "vs TF-IDF (all rows)": _ci(v["extra"].get("gain_vs_tfidf_all")),
                "vs winner": _ci(v["extra"].get("gain_vs_winner")) or "-",
                "CPU-min": f"{v['cpu_minutes']:.2f}",
                "gate": "passed" if v["gate_passed"] else "failed",
            }
        )
    refs = ", ".join(
        f"{name} {value:.4f}"
        for name, value in comparison["references"].items()
        if value is not None
    )
    decision = (
        f"**{comparison['winner']}** wins; it passed its promotion gate and may be deployed."
        if comparison["winner_gate_passed"]
        else f"**{comparison['winner']}** wins but failed its promotion gate, so nothing is "
        f"deployed: {'; '.join(comparison['winner_gate_reasons'])}"
    )
    return "\n".join(
        [
            f"# Experiment: {comparison['recipe']}",
            "",
            f"{len(comparison['variants'])} variants on the same {comparison['test_rows']} "
            f"test rows. Winner rule: {comparison['rule']}.",
            "",
            markdown_table(pd.DataFrame(lines)),
            "",
            f"Reference lines: {refs}." if refs else "",
            "",
            decision,
            "",
            f"![{metric} against training CPU-minutes]({PLOT_FILE})",
            "",
        ]
    )


def write_comparison(comparison: dict[str, Any], out_dir: Path) -> Path:
    """comparison.json, comparison.md and the plot in `out_dir`; returns the table's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_variants(comparison, out_dir / PLOT_FILE)
    atomic.write_text(out_dir / COMPARISON_FILE, json.dumps(comparison, indent=2, default=float))
    table = out_dir / TABLE_FILE
    atomic.write_text(table, render_table(comparison))
    return table


def log_comparison(
    tracker: Tracker, comparison: dict[str, Any], out_dir: Path, tags: dict[str, str]
) -> str:
    """A parent MLflow run for the experiment, one child per variant (MLflow's compare view
    works on the children); returns the parent's id."""
    metric = comparison["metric"]
    name = f"experiment-{comparison['recipe']}"
    with tracker.run(name, {**tags, "ft_pipeline.winner": comparison["winner"]}) as parent:
        tracker.log_params(parent, {"winner_rule": comparison["rule"][:500]})
        tracker.log_metrics(parent, {f"winner.{metric}": _winner(comparison)["score"]})
        for v in comparison["variants"]:
            child_tags = {
                **tags,
                "mlflow.parentRunId": parent,
                "ft_pipeline.adapter_key": v["adapter_key"],
                "ft_pipeline.train_run_id": v["mlflow_runs"].get("train", ""),
            }
            with tracker.run(f"variant-{v['name']}", child_tags) as child:
                params = {k: json.dumps(val) for k, val in v["overrides"].items()}
                tracker.log_params(child, {"variant": v["name"], **params})
                gain = v["extra"].get("gain_vs_tfidf_all") or {}
                tracker.log_metrics(
                    child,
                    {
                        metric: v["score"],
                        f"{metric}.ci_low": v["low"],
                        f"{metric}.ci_high": v["high"],
                        "train_cpu_minutes": v["cpu_minutes"],
                        "gain_vs_tfidf_all.low": gain.get("low"),
                        "gate_passed": float(v["gate_passed"]),
                        "winner": float(v["name"] == comparison["winner"]),
                    },
                )
        tracker.log_artifacts(parent, out_dir, "experiment")
    return parent


def _winner(comparison: dict[str, Any]) -> dict[str, Any]:
    return next(v for v in comparison["variants"] if v["name"] == comparison["winner"])
