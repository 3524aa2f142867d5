"""Exact and near duplicates in clean_frame: which row is kept and what the quarantine says."""

from ft_pipeline.lib.data.cleaning import clean_frame
from ft_pipeline.lib.data.readers import ROW_COLUMN
from ft_pipeline_tests.data.test_cleaning import (
    LONG,
    RECIPE,
    SOURCE,
    check_accounting,
    classification,
    clean,
    raw_frame,
    row,
)


def test_exact_duplicate_points_at_first_row():
    records = [
        row("The food was great"),
        row("something unrelated"),
        row("the  food was GREAT"),
        row("The food was great"),
    ]
    result = clean(records, classification(near_duplicate_threshold=None))
    check_accounting(records, result)
    assert result.kept[ROW_COLUMN].tolist() == [1, 2]
    q = result.quarantined
    assert q[ROW_COLUMN].tolist() == [3, 4]
    assert q["reason_code"].tolist() == ["duplicate", "duplicate"]
    assert q["reason"].tolist() == ["duplicate of row 1", "duplicate of row 1"]
    assert q["duplicate_of"].tolist() == [1, 1]
    assert str(q["duplicate_of"].dtype) == "Int64"
    # Quarantined duplicates keep their cleaned fields.
    assert q["label"].tolist() == ["positive", "positive"]
    assert q["text_original"].tolist() == ["the  food was GREAT", "The food was great"]


def test_duplicate_with_conflicting_label_says_so():
    result = clean([row("The food was great", "pos"), row("the food was great", "neg")])
    q = result.quarantined.iloc[0]
    assert q["reason"] == "duplicate of row 1; label conflict: negative vs positive"
    assert q["duplicate_of"] == 1


def test_duplicate_of_uses_source_row_not_position():
    frame = raw_frame([row("one tweet"), row("another tweet"), row("one tweet")])
    frame[ROW_COLUMN] = [10, 20, 30]
    result = clean_frame(frame, RECIPE, RECIPE.data.columns, SOURCE)
    q = result.quarantined.iloc[0]
    assert (q[ROW_COLUMN], q["duplicate_of"], q["reason"]) == (30, 10, "duplicate of row 10")


def test_near_duplicate_is_quarantined():
    recipe = classification(max_chars=1000, near_duplicate_threshold=0.8)
    records = [row(LONG), row("short unrelated tweet"), row(LONG.replace("catching", "catchinq"))]
    result = clean(records, recipe)
    check_accounting(records, result)
    q = result.quarantined.iloc[0]
    assert q["reason_code"] == "near_duplicate"
    assert q["reason"].startswith("near duplicate of row 1 (similarity 0.")
    assert q["duplicate_of"] == 1
    assert q[ROW_COLUMN] == 3
