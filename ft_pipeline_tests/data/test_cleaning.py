"""Unit tests for ft_pipeline.lib.data.cleaning.clean_frame on small hand-made raw frames."""

import pandas as pd
import pytest

from ft_pipeline.lib.data.cleaning import CLEAN_COLUMNS, QUARANTINE_COLUMNS, clean_frame
from ft_pipeline.lib.data.readers import ROW_COLUMN
from ft_pipeline.recipe import ColumnMapping, parse_recipe

SOURCE = "incoming:test.csv"
LABELS = ["negative", "neutral", "positive"]
LONG = (
    "the train was late again this morning and i missed the first half of the meeting, "
    "so i spent the afternoon catching up on notes and apologising to everyone involved"
)


def classification(**cleaning):
    return parse_recipe(
        {
            "name": "t",
            "labels": LABELS,
            "label_aliases": {"neg": "negative", "pos": "positive"},
            "data": {"columns": {"confidence": "confidence"}},
            "cleaning": {"min_chars": 3, "max_chars": 200, **cleaning},
        }
    )


RECIPE = classification(min_confidence=0.5)


def raw_frame(records):
    """A raw partition as read_source builds it: strings or None, plus source_row from 1."""
    frame = pd.DataFrame.from_records(records).astype(object)
    frame = frame.where(frame.notna(), None)
    frame.insert(0, ROW_COLUMN, range(1, len(frame) + 1))
    return frame


def clean(records, recipe=RECIPE, mapping=None):
    return clean_frame(raw_frame(records), recipe, mapping or recipe.data.columns, SOURCE)


def row(text, label="positive", confidence=None):
    return {"text": text, "label": label, "confidence": confidence}


def check_accounting(raw_rows, result):
    """rows in = kept + quarantined, and every source_row lands in exactly one table."""
    n = len(raw_rows)
    assert result.stats["rows_in"] == n == result.rows_in
    assert result.stats["rows_kept"] == len(result.kept)
    assert result.stats["rows_quarantined"] == len(result.quarantined)
    assert len(result.kept) + len(result.quarantined) == n
    rows = [*result.kept[ROW_COLUMN], *result.quarantined[ROW_COLUMN]]
    assert sorted(rows) == list(range(1, n + 1))
    assert list(result.kept.columns) == CLEAN_COLUMNS
    assert list(result.quarantined.columns) == QUARANTINE_COLUMNS
    assert list(result.quarantined[ROW_COLUMN]) == sorted(result.quarantined[ROW_COLUMN])
    assert (result.kept["source"] == SOURCE).all()
    assert (result.quarantined["source"] == SOURCE).all()


@pytest.mark.parametrize(
    ("record", "code", "reason"),
    [
        pytest.param(
            row("the movie was fine", "bogus"),
            "unknown_label",
            "unknown label 'bogus'; allowed: negative, neutral, positive",
            id="unknown-label",
        ),
        pytest.param(row(""), "empty_text", "text is empty", id="empty-text"),
        pytest.param(row("   \t"), "empty_text", "text is empty", id="blank-text"),
        pytest.param(row(None), "empty_text", "text is empty", id="none-text"),
        pytest.param(
            row("Õ¢_\x8aÎ"), "empty_text", "text is empty after cleaning", id="only-mojibake"
        ),
        pytest.param(row("fine text", None), "missing_label", "label is empty", id="no-label"),
        pytest.param(row("fine text", "  "), "missing_label", "label is empty", id="blank-label"),
        pytest.param(
            row("fine text", "pos", "abc"),
            "invalid_confidence",
            "confidence 'abc' is not a number",
            id="conf-abc",
        ),
        pytest.param(
            row("fine text", "pos", "1.5"),
            "invalid_confidence",
            "confidence '1.5' is outside [0, 1]",
            id="conf-1.5",
        ),
        pytest.param(
            row("fine text", "pos", "-0.1"),
            "invalid_confidence",
            "outside [0, 1]",
            id="conf-negative",
        ),
        pytest.param(
            row("fine text", "pos", "nan"), "invalid_confidence", "outside [0, 1]", id="conf-nan"
        ),
        pytest.param(
            row("fine text", "pos", "0.2"),
            "low_confidence",
            "confidence 0.2 below minimum 0.5",
            id="low-conf",
        ),
        pytest.param(row("x" * 201), "too_long", "text has 201 chars, maximum 200", id="too-long"),
        pytest.param(row("ok"), "too_short", "text has 2 chars, minimum 3", id="too-short"),
    ],
)
def test_single_bad_row_is_quarantined_with_reason(record, code, reason):
    result = clean([record])
    check_accounting([record], result)
    assert result.kept.empty
    q = result.quarantined.iloc[0]
    assert q["reason_code"] == code
    assert reason in q["reason"]
    assert q[ROW_COLUMN] == 1
    assert pd.isna(q["duplicate_of"])
    assert q["text_original"] == record["text"]
    assert result.reasons() == {code: 1}


def test_length_is_checked_after_normalisation():
    result = clean([row("   a \t  "), row("x  " + "y" * 198)])
    assert result.quarantined["reason_code"].tolist() == ["too_short"]
    assert result.kept["text"].tolist() == ["x " + "y" * 198]


@pytest.mark.parametrize(
    ("raw_label", "expected"),
    [
        ("positive", "positive"),
        ("Positive", "positive"),
        ("  NEUTRAL ", "neutral"),
        ("neg", "negative"),
        ("NEG", "negative"),
        (" Pos", "positive"),
    ],
)
def test_labels_are_case_folded_and_aliased(raw_label, expected):
    result = clean([row("a perfectly good tweet", raw_label)])
    assert result.quarantined.empty
    assert result.kept["label"].tolist() == [expected]


def test_case_sensitive_labels_when_lowercase_labels_is_off():
    recipe = classification(lowercase_labels=False)
    result = clean([row("first tweet here", "positive"), row("second tweet", "Positive")], recipe)
    assert result.kept["label"].tolist() == ["positive"]
    assert result.quarantined["reason_code"].tolist() == ["unknown_label"]


def test_kept_row_fields():
    result = clean([row("Love it @bob http://x.co/y  cafÃ©", "pos", "0.75")])
    assert result.quarantined.empty
    kept = result.kept.iloc[0]
    assert kept["source"] == SOURCE
    assert kept[ROW_COLUMN] == 1
    assert kept["text"] == "Love it @user <url> café"
    assert kept["text_original"] == "Love it @bob http://x.co/y  cafÃ©"
    assert kept["label"] == "positive"
    assert kept["confidence"] == 0.75
    assert kept["dedup_key"] == "love it @user <url> café"
    assert kept["response"] is None
    assert kept["messages"] is None
    assert result.stats["unicode_fixed"] == 1
    assert result.stats["mojibake_stripped"] == 0


def test_confidence_column_is_float():
    result = clean([row("first tweet", confidence="0.9"), row("second tweet", confidence=None)])
    assert result.kept["confidence"].dtype == "float64"
    assert result.kept["confidence"].iloc[0] == 0.9
    assert pd.isna(result.kept["confidence"].iloc[1])


def test_mojibake_counters():
    result = clean([row("I donÕ¢_\x8aÎ_\x86¢t know"), row("cafÃ© time"), row("plain")])
    assert result.kept["text"].tolist() == ["I don t know", "café time", "plain"]
    assert result.stats["mojibake_stripped"] == 1
    assert result.stats["unicode_fixed"] >= 1


def test_mixed_frame_accounting():
    records = [
        row("good tweet number one", "pos", "0.9"),  # 1 kept
        row("bad label here", "sarcastic"),  # 2 unknown_label
        row(""),  # 3 empty_text
        row("no label tweet", None),  # 4 missing_label
        row("weird conf", "neg", "abc"),  # 5 invalid_confidence
        row("weird conf two", "neg", "1.5"),  # 6 invalid_confidence
        row("unsure tweet", "neu", "0.1"),  # 7 low_confidence (checked before the label)
        row("y" * 300),  # 8 too_long
        row("GOOD tweet   number one", "POSITIVE"),  # 9 duplicate of 1
        row("a neutral tweet", "Neutral", "0.5"),  # 10 kept
        row("a negative one", "NEG", ""),  # 11 kept, empty confidence -> None
    ]
    result = clean(records)
    check_accounting(records, result)
    assert result.kept[ROW_COLUMN].tolist() == [1, 10, 11]
    assert result.kept["label"].tolist() == ["positive", "neutral", "negative"]
    q = result.quarantined
    by_row = dict(zip(q[ROW_COLUMN], q["reason_code"], strict=True))
    assert by_row == {
        2: "unknown_label",
        3: "empty_text",
        4: "missing_label",
        5: "invalid_confidence",
        6: "invalid_confidence",
        7: "low_confidence",
        8: "too_long",
        9: "duplicate",
    }
    assert q["reason"].map(lambda r: isinstance(r, str) and r != "").all()
    is_dup = q["reason_code"].isin(["duplicate", "near_duplicate"])
    assert q.loc[is_dup, "duplicate_of"].notna().all()
    assert q.loc[~is_dup, "duplicate_of"].isna().all()
    assert result.reasons() == {
        "invalid_confidence": 2,
        "unknown_label": 1,
        "empty_text": 1,
        "missing_label": 1,
        "low_confidence": 1,
        "too_long": 1,
        "duplicate": 1,
    }


def test_custom_column_mapping():
    mapping = ColumnMapping(text="tweet", label="sentiment", confidence=None)
    records = [{"tweet": "hello there", "sentiment": "pos", "text": "ignored", "label": "x"}]
    result = clean(records, mapping=mapping)
    assert result.kept["text"].tolist() == ["hello there"]
    assert result.kept["label"].tolist() == ["positive"]


def test_empty_frame():
    frame = pd.DataFrame({ROW_COLUMN: pd.Series([], dtype=int), "text": [], "label": []})
    result = clean_frame(frame, RECIPE, RECIPE.data.columns, SOURCE)
    assert result.stats["rows_in"] == 0
    assert result.kept.empty
    assert result.quarantined.empty


def test_raw_partition_after_parquet_round_trip_cleans_the_same(tmp_path):
    records = [
        row("good tweet one", "pos", "0.9"),
        row(None, "neg", "0.8"),
        row("no label tweet", None, "0.7"),
        row("no confidence tweet", "neg", None),
    ]
    path = tmp_path / "raw.parquet"
    raw_frame(records).to_parquet(path, index=False)
    result = clean_frame(pd.read_parquet(path), RECIPE, RECIPE.data.columns, SOURCE)
    expected = clean(records)
    assert result.kept[ROW_COLUMN].tolist() == expected.kept[ROW_COLUMN].tolist() == [1, 4]
    assert result.quarantined["reason_code"].tolist() == ["empty_text", "missing_label"]
