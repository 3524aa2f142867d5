"""The downstream steps of `ft-pipeline run` (and `ft-pipeline experiment`), one line each.

A recipe without an experiment runs each asset in turn. With one, each variant trains and
is evaluated in a run of its own (its partition of fine_tuned_adapter and evaluation_report;
the `training` pool keeps them one at a time), then experiment_comparison picks the winner
and deployed_model promotes it if it passed its gate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DOWNSTREAM = ["tokenized_dataset", "fine_tuned_adapter", "evaluation_report", "deployed_model"]
VARIANT_ASSETS = ("fine_tuned_adapter", "evaluation_report")


@dataclass(frozen=True)
class Step:
    label: str
    assets: tuple[str, ...]
    partition: str | None = None
    # A variant whose gate fails is still compared; only a missing result stops the run.
    gate_may_fail: bool = False


def steps_for(recipe, until_assets: list[str]) -> list[Step]:
    """The steps, in order, that build `until_assets` for this recipe."""
    if recipe.experiment is None:
        return [Step(a, (a,)) for a in until_assets]
    steps = [Step(a, (a,)) for a in until_assets if a == "tokenized_dataset"]
    per_variant = tuple(a for a in VARIANT_ASSETS if a in until_assets)
    if per_variant:
        variants = recipe.variants()
        for i, v in enumerate(variants, 1):
            label = f"variant {i}/{len(variants)} {v.name}: {' + '.join(per_variant)}"
            steps.append(Step(label, per_variant, v.name, gate_may_fail=True))
    if "evaluation_report" in until_assets:
        steps.append(Step("experiment_comparison", ("experiment_comparison",)))
    if "deployed_model" in until_assets:
        steps.append(Step("deployed_model", ("deployed_model",)))
    return steps


def run_steps(steps: list[Step], materialize: Callable, failure_text: Callable) -> dict[str, str]:
    """Run each step, print one line per step; returns step -> why it failed."""
    import dagster as dg

    failures: dict[str, str] = {}
    for step in steps:
        print(f"{step.label} ...", flush=True)
        started = time.monotonic()
        result = materialize(dg.AssetSelection.assets(*step.assets), step.partition)
        took = time.monotonic() - started
        made = [a for a in step.assets if result.asset_materializations_for_node(a)]
        if not result.success and not (step.gate_may_fail and len(made) == len(step.assets)):
            failures[step.label] = failure_text(result)
            print(f"    FAILED in {took:.1f}s: {failures[step.label]}")
            if not step.gate_may_fail:
                break
            continue
        lines = [summary(result, a) for a in step.assets]
        note = "" if result.success else f"; not promotable:\n    {_failed_checks(result)}"
        print(f"    ok in {took:.1f}s: {'; '.join(lines)}{note}")
    return failures


def _failed_checks(result) -> str:
    """Each failed check as its block (measured, limit, fix, where to look)."""
    from ft_pipeline.defs.explained import failure_block

    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    text = "\n".join(failure_block(e) for e in failed) or "failed"
    return text.replace("\n", "\n    ")


def summary(result, asset: str) -> str:
    """One line on what a materialization did."""
    [event] = result.asset_materializations_for_node(asset)
    meta = {k: v.value for k, v in event.metadata.items()}
    if asset == "tokenized_dataset":
        return f"splits {meta['split_sizes']}"
    if asset == "fine_tuned_adapter":
        how = "reused" if meta["reused"] else f"trained {meta['steps']} steps"
        return f"{how}, best val loss {meta['best_val_loss']:.4f} (adapter {meta['adapter_key']})"
    if asset == "evaluation_report":
        scores = {
            k: round(v, 4) for k, v in meta.items() if k.startswith(("macro_f1_", "token_f1_"))
        }
        return f"{scores}; report {meta['report_path']}"
    if asset == "experiment_comparison":
        passed = "passed its gate" if meta["winner_gate_passed"] else "FAILED its gate"
        return f"winner {meta['winner']} ({passed}); table {meta['path']}"
    if asset == "deployed_model":
        return (
            f"{meta['registered_model']} version {meta['version']} is champion "
            f"(previous: {meta['previous_champion']}); serve with `make serve`"
        )
    return ""
