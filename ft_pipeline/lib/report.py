"""Small renderers for metadata shown in the Dagster UI and logged to MLflow."""

from __future__ import annotations

import pandas as pd


def markdown_table(frame: pd.DataFrame, index: bool = False) -> str:
    """A Markdown table, or `_none_` for an empty frame."""
    return frame.to_markdown(index=index) if len(frame) else "_none_"
