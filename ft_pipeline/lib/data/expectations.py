"""Great Expectations 1.x suites, run in an ephemeral context on pandas DataFrames.

Each Dagster check runs one small suite (one property) and puts `summarize()`'s output in
its metadata, so a failed gate shows which expectation failed and sample bad values.

Great Expectations takes seconds to import, so it loads on the first suite, not with the
code location: the webserver, the daemon and every run without a data check skip it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def gx_expectations():
    """`great_expectations.expectations`, imported on first use."""
    import great_expectations as gx

    return gx.expectations


@dataclass(frozen=True)
class SuiteOutcome:
    """Whether every expectation passed, and a JSON-able summary for check metadata."""

    success: bool
    summary: dict[str, Any]


@lru_cache(maxsize=1)
def _batch_definition():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("ft_pipeline")
    asset = source.add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def run_suite(frame: pd.DataFrame, name: str, expectations: list[Any]) -> SuiteOutcome:
    """Validate `frame` against a named suite of GX expectations."""
    import great_expectations as gx

    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(gx.ExpectationSuite(name=name, expectations=expectations))
    rows = []
    for r in result.results:
        kwargs = {k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id"}
        detail = {
            k: r.result[k]
            for k in (
                "observed_value",
                "unexpected_count",
                "unexpected_percent",
                "partial_unexpected_list",
                "element_count",
            )
            if k in r.result
        }
        if "partial_unexpected_list" in detail:
            detail["partial_unexpected_list"] = detail["partial_unexpected_list"][:10]
        rows.append(
            {
                "expectation": r.expectation_config.type,
                "success": bool(r.success),
                "kwargs": kwargs,
                **detail,
            }
        )
    summary = {
        "suite": name,
        "success": bool(result.success),
        "statistics": dict(result.statistics),
        "results": rows,
    }
    return SuiteOutcome(bool(result.success), _jsonable(summary))
