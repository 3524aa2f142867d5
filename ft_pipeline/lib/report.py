"""Small renderers for metadata shown in the Dagster UI and logged to MLflow."""

from __future__ import annotations

import pandas as pd


def markdown_table(frame: pd.DataFrame, index: bool = False) -> str:
    """A Markdown table, or `_none_` for an empty frame."""
    # disable_numparse: keep numbers exactly as formatted ("0.610", not "0.61").
    return frame.to_markdown(index=index, disable_numparse=True) if len(frame) else "_none_"
