"""Bad rows among good ones, each through Dagster on a real instance.

A bad row is quarantined with its row number, a reason code and a reason that names the
field; the good rows of the same file are kept; rows in = kept + quarantined, every source
row exactly once; a good partition in the same instance still materializes.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from ft_pipeline_tests.conftest import fixture_rows
from ft_pipeline_tests.reliability_input import Site, csv_text

ROWS = fixture_rows(4, seed=13)  # 12 rows, 4 per label: rows 1-12 of every file below
ALLOWED = "allowed: negative, neutral, positive"


@pytest.fixture
def site(tmp_path: Path):
    with dg.DagsterInstance.ephemeral() as instance:
        yield Site(tmp_path, instance)


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _by_row(quarantined: pd.DataFrame) -> dict[int, tuple[str, str]]:
    return {
        int(r.source_row): (r.reason_code, r.reason) for r in quarantined.itertuples(index=False)
    }


def _row(text: str, label: str) -> dict[str, str]:
    return {"text": text, "label": label, "confidence": "0.9"}


def test_label_outside_the_recipe_set_is_quarantined_with_its_reason(site: Site):
    bad = [
        _row("the seat was fine i guess", "meh"),
        _row("no idea what to make of it", ""),
        _row("they call it mixed feelings", "negative-ish"),
    ]
    kept, quarantined = site.ingest("labels.csv", csv_text(ROWS + bad)).accounted(15)
    assert len(kept) == 12
    assert _by_row(quarantined) == {
        13: ("unknown_label", f"unknown label 'meh'; {ALLOWED}"),
        14: ("missing_label", "label is empty"),
        15: ("unknown_label", f"unknown label 'negative-ish'; {ALLOWED}"),
    }
    site.good()


def test_labels_differing_only_by_case_or_whitespace_are_one_label(tmp_path: Path):
    variants = ["Positive", " positive ", "POSITIVE\t", "positive\u00a0", "POS", "Very   GOOD "]
    variants.append("posi tive")  # a space inside the word is another word: not matched
    bad = [_row(f"variant {i} of a lovely smooth flight", v) for i, v in enumerate(variants)]
    with dg.DagsterInstance.ephemeral() as instance:
        site = Site(tmp_path, instance, label_aliases={"very good": "positive"})
        outcome = site.ingest("case.jsonl", _jsonl(ROWS + bad))
        kept, quarantined = outcome.accounted(19)
        assert kept.set_index("source_row").loc[13:18, "label"].eq("positive").all()
        assert _by_row(quarantined) == {
            19: ("unknown_label", f"unknown label 'posi tive'; {ALLOWED}")
        }
        labels = outcome.metadata("cleaned_data")["label_distribution"]
        assert "| positive |" in labels and "Positive" not in labels and "POS" not in labels
        site.good()


def test_case_sensitive_labels_say_why_a_case_variant_is_unknown(tmp_path: Path):
    with dg.DagsterInstance.ephemeral() as instance:
        site = Site(tmp_path, instance, cleaning={"lowercase_labels": False})
        bad = [_row("great and smooth and friendly", "Positive")]
        _, quarantined = site.ingest("case.csv", csv_text(ROWS + bad)).accounted(13)
        code, reason = _by_row(quarantined)[13]
        assert code == "unknown_label"
        assert reason == (
            f"unknown label 'Positive'; {ALLOWED} "
            "(differs from 'positive' by case; cleaning.lowercase_labels is off)"
        )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_empty_and_whitespace_only_texts_are_quarantined(site: Site, suffix: str):
    texts = ["", "   ", "\t\n ", "\u00a0\u2003", "\u200b\u200b"]
    records: list[dict] = [_row(t, "neutral") for t in texts]
    if suffix == ".jsonl":
        records += [{"text": None, "label": "neutral"}, {"label": "neutral"}]  # null, absent
    content = csv_text(ROWS + records) if suffix == ".csv" else _jsonl(ROWS + records)
    kept, quarantined = site.ingest(f"empty{suffix}", content).accounted(12 + len(records))
    assert len(kept) == 12
    reasons = _by_row(quarantined)
    assert set(reasons) == set(range(13, 13 + len(records)))
    assert {code for code, _ in reasons.values()} == {"empty_text"}
    assert reasons[13] == ("empty_text", "text is empty")
    assert reasons[17] == ("empty_text", "text is empty after cleaning")  # zero-width only
    site.good()


def test_a_one_megabyte_text_is_quarantined_as_too_long(site: Site):
    huge = ("the flight was late again and " * 40_000)[: 2**20]
    bad = [_row(huge, "negative")]
    outcome = site.ingest("huge_text.csv", csv_text(ROWS[:6] + bad + ROWS[6:]))
    kept, quarantined = outcome.accounted(13)
    assert len(kept) == 12
    code, reason = _by_row(quarantined)[7]
    assert code == "too_long"
    assert reason.startswith("text has 10") and reason.endswith("chars, maximum 200")
    assert len(quarantined.iloc[0]["text_original"]) == 2**20  # kept whole in quarantine
    preview = outcome.metadata("cleaned_data")["quarantine_preview"]
    assert len(preview) < 1000 and f"({2**20} chars)" in preview  # not 1 MB of metadata
    site.good()
