"""Check results that say what to change: what was measured, the limit, the fix, where to look.

Every blocking check builds its result here, so a failure reads the same in the UI (the
check's description and its `measured` / `limit` / `fix` / `look` metadata) and in the
terminal (`ft-pipeline run` prints `failure_block` for each failed check).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

FIELDS = ("measured", "limit", "fix", "look")


def explained(
    check_name: str,
    passed: bool,
    *,
    measured: str,
    limit: str,
    fix: str,
    look: str,
    metadata: dict[str, Any] | None = None,
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    """The check's result; on failure its description is the one-line form of the block."""
    text = {"measured": measured, "limit": limit, "fix": fix, "look": look}
    description = None if passed else "; ".join(f"{k}: {v}" for k, v in text.items())
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=passed,
        severity=severity,
        description=description,
        metadata={**text, **(metadata or {})},
    )


def failure_block(evaluation: Any) -> str:
    """A failed check evaluation (a Dagster AssetCheckEvaluation) as the terminal shows it."""
    meta = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
    where = f" [{evaluation.partition}]" if getattr(evaluation, "partition", None) else ""
    lines = [f"check {evaluation.check_name}{where} failed"]
    if all(k in meta for k in FIELDS[:3]):
        lines += [f"  {k + ':':<9} {meta[k]}" for k in FIELDS if k in meta]
    else:
        lines.append(f"  {evaluation.description or 'failed (no description)'}")
    return "\n".join(lines)
