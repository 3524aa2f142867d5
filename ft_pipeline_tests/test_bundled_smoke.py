"""Smoke test on the real bundled corpus and SmolLM2 tokenizer (about a minute on 2 cores)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ft_pipeline import cli
from ft_pipeline.lib.state import DEFAULT_RECIPE, StatePaths

pytestmark = pytest.mark.slow


def test_make_run_data_half_on_bundled_corpus(tmp_path, monkeypatch, capsys):
    for var in ("FT_HOME", "FT_RECIPE", "DAGSTER_HOME"):
        monkeypatch.setenv(var, "unused")
    home = tmp_path / "home"
    assert cli.main(["--home", str(home), "--recipe", str(DEFAULT_RECIPE), "run"]) == 0
    paths = StatePaths(home)
    key = "bundled:crowdflower-tweets"
    stats = json.loads(
        paths.clean(key).with_name(paths.clean(key).stem + ".stats.json").read_text()
    )
    quarantine = pd.read_parquet(paths.quarantine(key))
    clean = pd.read_parquet(paths.clean(key))
    assert stats["rows_in"] == 38158 == len(clean) + len(quarantine)
    reasons = quarantine["reason_code"].value_counts()
    assert reasons["duplicate"] > 900 and reasons["near_duplicate"] > 50
    assert stats["mojibake_stripped"] > 1000 and stats["unicode_fixed"] > 1000
    assert not clean["text"].str.contains("\u00d5\u00a2_").any()
    manifest = json.loads((paths.tokenized("tweet_sentiment") / "manifest.json").read_text())
    assert manifest["leaking_keys"] == 0 and manifest["rows_out"] > 30000
    assert set(manifest["label_distribution"]["test"]) == {"negative", "neutral", "positive"}
    assert "splits {'train'" in capsys.readouterr().out
