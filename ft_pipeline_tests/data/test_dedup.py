"""Unit tests for ft_pipeline.lib.data.dedup: exact and MinHash-LSH near-duplicate detection."""

import random

import pytest

from ft_pipeline.lib.data.dedup import Duplicate, find_duplicates, jaccard, shingles
from ft_pipeline.lib.data.text import dedup_key

LONG = (
    "the train was late again this morning and i missed the first half of the meeting, "
    "so i spent the afternoon catching up on notes and apologising to everyone involved"
)
LONG_EDITED = LONG.replace("catching", "catchinq")
UNRELATED = [
    "just finished reading that book everyone talks about and honestly it was fine",
    "our team finally shipped the release after three weeks of late nights and pizza",
    "watching the storm roll in from the porch with a cup of tea is the best feeling",
    "my cat knocked the plant off the windowsill for the third time this week",
]


def test_shingles_and_jaccard():
    assert shingles("abc") == {"abc"}
    assert shingles("abcde") == {"abcde"}
    assert shingles("abcdef") == {"abcde", "bcdef"}
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 1.0


@pytest.mark.parametrize("threshold", [None, 0.8])
def test_exact_duplicates_point_at_first_occurrence(threshold):
    keys = ["a b c", "x y z", "a b c", "q", "x y z", "a b c"]
    assert find_duplicates(keys, threshold) == [
        Duplicate(2, 0, "exact", 1.0),
        Duplicate(4, 1, "exact", 1.0),
        Duplicate(5, 0, "exact", 1.0),
    ]


def test_exact_duplicates_after_dedup_key():
    texts = ["Hello World", "something else entirely", "  hello   WORLD\t"]
    assert find_duplicates([dedup_key(t) for t in texts], None) == [Duplicate(2, 0, "exact", 1.0)]


def test_near_duplicate_found_at_threshold():
    keys = [LONG, *UNRELATED, LONG_EDITED]
    found = find_duplicates(keys, 0.8)
    assert len(found) == 1
    dup = found[0]
    assert (dup.index, dup.of, dup.kind) == (len(keys) - 1, 0, "near")
    expected = jaccard(shingles(LONG), shingles(LONG_EDITED))
    assert 0.8 <= expected < 1.0
    assert dup.similarity == round(expected, 4)


@pytest.mark.parametrize("threshold", [None, 1.0])
def test_near_duplicate_ignored_without_threshold(threshold):
    assert find_duplicates([LONG, *UNRELATED, LONG_EDITED], threshold) == []


def test_near_duplicate_below_threshold_is_not_flagged():
    similarity = jaccard(shingles(LONG), shingles(LONG_EDITED))
    assert find_duplicates([LONG, LONG_EDITED], min(1.0, similarity + 0.01)) == []


def test_unrelated_texts_are_not_flagged():
    assert find_duplicates([LONG, *UNRELATED], 0.5) == []


def test_exact_and_near_mixed_are_sorted_by_index():
    keys = [LONG, UNRELATED[0], LONG_EDITED, UNRELATED[0], LONG]
    found = find_duplicates(keys, 0.8)
    assert [(d.index, d.of, d.kind) for d in found] == [
        (2, 0, "near"),
        (3, 1, "exact"),
        (4, 0, "exact"),
    ]


def test_fewer_than_two_survivors():
    assert find_duplicates([], 0.8) == []
    assert find_duplicates(["only one"], 0.8) == []
    assert find_duplicates(["same", "same"], 0.8) == [Duplicate(1, 0, "exact", 1.0)]


def test_one_char_edit_of_tweet_length_text_is_found():
    text = "i cannot believe how good the new coffee place downtown is, best latte in town"
    edited = text.replace("good", "goox")
    assert jaccard(shingles(text), shingles(edited)) >= 0.8
    assert find_duplicates([text, edited], 0.8) == [
        Duplicate(1, 0, "near", round(jaccard(shingles(text), shingles(edited)), 4))
    ]


N_DISTINCT = 5000
N_PLANTED = 50


@pytest.fixture(scope="module")
def planted_corpus():
    """5,000 distinct tweet-length sentences plus 50 one-character edits of some of them."""
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(2000)]
    sentences: list[str] = []
    seen: set[str] = set()
    while len(sentences) < N_DISTINCT:
        s = " ".join(rng.choice(words) for _ in range(14))
        if s not in seen:
            seen.add(s)
            sentences.append(s)
    planted: dict[int, int] = {}
    keys = list(sentences)
    for n in range(N_PLANTED):
        source = n * 97
        s = sentences[source]
        pos = len(s) // 2
        keys.append(s[:pos] + ("z" if s[pos] != "z" else "y") + s[pos + 1 :])
        planted[N_DISTINCT + n] = source
    found = find_duplicates(keys, 0.8)
    return keys, planted, found


def test_scale_no_false_positives(planted_corpus):
    keys, planted, found = planted_corpus
    assert len(keys) == N_DISTINCT + N_PLANTED
    for dup in found:
        assert dup.kind == "near"
        assert planted.get(dup.index) == dup.of
        assert dup.similarity >= 0.8
    assert len(found) >= N_PLANTED // 2


def test_scale_all_planted_near_duplicates_found(planted_corpus):
    _, planted, found = planted_corpus
    assert {d.index: d.of for d in found} == planted
