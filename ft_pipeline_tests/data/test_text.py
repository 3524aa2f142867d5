"""Unit tests for ft_pipeline.lib.data.text: Unicode repair, mojibake stripping, URLs, mentions."""

import unicodedata

import pytest

from ft_pipeline.lib.data.text import (
    MOJIBAKE_RUN_RE,
    TextResult,
    dedup_key,
    normalize_text,
    strip_mojibake,
)

LOSSY_DONT = "I donÕ¢_\x8aÎ_\x86¢t"
LOSSY_LOVE = "love it äó_ really"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cafÃ©", "café"),
        ("Ã©tÃ©", "été"),
        ("&amp;", "&"),
        ("rock &amp; roll", "rock & roll"),
        ("donâ€™t", "don't"),
    ],
)
def test_ftfy_repairs_classic_mojibake(raw, expected):
    result = normalize_text(raw)
    assert result.text == expected
    assert result.unicode_fixed is True
    assert result.mojibake_stripped is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (LOSSY_DONT, "I don t"),
        (LOSSY_LOVE, "love it really"),
        ("great day Õ¢_\x8aÎ_\x86¢ again", "great day again"),
    ],
)
def test_lossy_mojibake_is_stripped_and_flagged(raw, expected):
    result = normalize_text(raw)
    assert result.text == expected
    assert result.mojibake_stripped is True
    assert MOJIBAKE_RUN_RE.search(result.text) is None
    # ftfy must not have "repaired" the garbage into another script.
    assert all(ord(ch) < 0x370 for ch in result.text)


@pytest.mark.parametrize("raw", [LOSSY_DONT, LOSSY_LOVE])
def test_strip_mojibake_reports_change_on_lossy_text(raw):
    text, changed = strip_mojibake(raw)
    assert changed is True
    assert "_" not in text
    assert MOJIBAKE_RUN_RE.search(text) is None


def test_mojibake_only_text_becomes_empty():
    result = normalize_text("Õ¢_\x8aÎ")
    assert result.text == ""
    assert result.mojibake_stripped is True


@pytest.mark.parametrize(
    "raw",
    [
        "Größe café naïve",
        "snake_case",
        "__init__ and a_b_c",
        "déjà vu",
        "São Paulo",
        "résumé",
        "Ñandú",
        "plain ascii text, with punctuation!",
    ],
)
def test_legitimate_text_is_untouched(raw):
    assert normalize_text(raw) == TextResult(raw, unicode_fixed=False, mojibake_stripped=False)
    assert strip_mojibake(raw) == (raw, False)


@pytest.mark.parametrize(
    "raw",
    [
        "Tickets cost €10",
        "Only £5 today",
        "It is 20°C outside",
        "©2024 Acme",
        "2010–2020",
        "Wait for it…",
    ],
)
def test_legitimate_symbols_are_untouched(raw):
    result = normalize_text(raw)
    assert result.text == raw
    assert result.mojibake_stripped is False


def test_options_disable_repair_and_stripping():
    result = normalize_text("cafÃ©  &amp;", fix_unicode=False, mojibake=False)
    assert result == TextResult("cafÃ© &amp;", unicode_fixed=False, mojibake_stripped=False)


def test_without_ftfy_mojibake_is_stripped_not_repaired():
    result = normalize_text("cafÃ© au lait", fix_unicode=False)
    assert result.text == "caf au lait"
    assert result.unicode_fixed is False
    assert result.mojibake_stripped is True


URL_TEXT = "see http://x.co/a?b=1 and WWW.Example.org/page now"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("keep", URL_TEXT),
        ("replace", "see <url> and <url> now"),
        ("remove", "see and now"),
    ],
)
def test_url_modes(mode, expected):
    assert normalize_text(URL_TEXT, urls=mode).text == expected


def test_url_token_is_configurable():
    assert normalize_text("go https://a.b/c", urls="replace", url_token="[U]").text == "go [U]"


MENTION_TEXT = "@bob hi @alice_1, mail a@b.com"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("keep", MENTION_TEXT),
        ("replace", "@user hi @user, mail a@b.com"),
        ("remove", "hi , mail a@b.com"),
    ],
)
def test_mention_modes_leave_email_addresses_alone(mode, expected):
    assert normalize_text(MENTION_TEXT, mentions=mode).text == expected


def test_mention_token_is_configurable():
    assert normalize_text("yo @bob", mentions="replace", mention_token="@X").text == "yo @X"


def test_mention_inside_url_goes_with_the_url():
    result = normalize_text("see https://t.co/@bob now", urls="replace", mentions="replace")
    assert result.text == "see <url> now"


def test_kept_url_is_not_rewritten_by_mention_handling():
    raw = "watch https://youtube.com/@alice/videos now"
    assert normalize_text(raw, urls="keep", mentions="replace").text == raw


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  a\t\tb\n\nc\r\n d  ", "a b c d"),
        ("x\u2028y", "x y"),
        ("x\u200by", "x y"),
        ("\n\t  \r\n", ""),
    ],
)
def test_whitespace_and_separators_collapse(raw, expected):
    assert normalize_text(raw).text == expected


@pytest.mark.parametrize("fix_unicode", [True, False])
@pytest.mark.parametrize("raw", ["a\x00b", "a\x07b", "a\ufeffb", "a\u200bb", "a\x85b"])
def test_control_characters_never_survive(raw, fix_unicode):
    text = normalize_text(raw, fix_unicode=fix_unicode).text
    # ftfy reads a lone C1 control as the cp1252 character it stood for (0x85 is "…").
    expected = "a…b" if fix_unicode and raw == "a\x85b" else "ab"
    assert text.replace(" ", "") == expected
    assert all(unicodedata.category(ch) not in ("Cc", "Cf") for ch in text)


def test_controls_become_spaces_without_ftfy():
    assert normalize_text("a\x00b\x07c", fix_unicode=False).text == "a b c"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Hello World", "  hello\t\tWORLD \n"),
        ("Straße", "STRASSE"),
        ("a b c", "a  b\nc"),
    ],
)
def test_dedup_key_folds_case_and_spacing(a, b):
    assert dedup_key(a) == dedup_key(b)


def test_dedup_key_values():
    assert dedup_key("  Hello\tWORLD  ") == "hello world"
    assert dedup_key("Hello World") != dedup_key("Hello Word")
