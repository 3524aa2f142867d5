"""Text normalisation: Unicode repair, mojibake stripping, whitespace, URLs and mentions.

`ftfy` repairs mojibake that can be undone. Some corpora (the bundled CrowdFlower tweets
among them) also carry *lossy* mojibake, where bytes were replaced by `_` on the way
("I donÕ¢_ŠÎ_†¢t"): no decoder can recover it, so runs of such characters are removed
and counted instead of being fed to the model.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import ftfy

URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
MENTION_RE = re.compile(r"(?<![\w@])@\w{1,30}")
URL_SPLIT_RE = re.compile(r"((?:https?://|www\.)\S+)", re.IGNORECASE)
WHITESPACE_RE = re.compile(r"\s+")
# Characters that only appear in text decoded with the wrong codec: C1 controls, the
# Latin-1 supplement and the cp1252 punctuation block. A run of two or more of them
# (underscores from lossy conversions included) is mojibake; one accented letter is not.
_MOJI = (
    "\u0080-\u00ff\u0152\u0153\u0160\u0161\u0178\u017d\u017e"
    "\u0192\u02c6\u02dc\u2013-\u203a\u20ac\u2122"
)
MOJIBAKE_RUN_RE = re.compile(rf"_?[{_MOJI}](?:[{_MOJI}_]*[{_MOJI}])?_?")
C1_RE = re.compile("[\u0080-\u009f]")
# ftfy sometimes "repairs" lossy mojibake into Greek, Cyrillic, Armenian or private-use
# characters that the input never had: such a repair is rejected.
_SUSPECT_SCRIPTS = re.compile("[\u0370-\u058f\ue000-\uf8ff\U000f0000-\U0010ffff]")


@dataclass(frozen=True)
class TextResult:
    """A normalised text and what was done to it (for the cleaning report)."""

    text: str
    unicode_fixed: bool = False
    mojibake_stripped: bool = False


def strip_mojibake(text: str) -> tuple[str, bool]:
    """Remove runs of mojibake characters that survive ftfy; report whether any were found."""
    changed = False

    def _replace(match: re.Match[str]) -> str:
        nonlocal changed
        run = match.group(0)
        core = run.strip("_")
        # One symbol ("€10", "»") or two accented letters side by side ("Größe") are real
        # text; C1 controls, underscores glued to the run, mixed symbol runs, or three or
        # more such characters are not.
        glued = run.startswith("_") and run.endswith("_") and len(run) > 2
        if (
            glued
            or C1_RE.search(run)
            or ("_" in run and len(core) >= 2)
            or (len(core) >= 2 and not core.isalpha())
            or len(core) >= 3
        ):
            changed = True
            return " "
        return run

    return MOJIBAKE_RUN_RE.sub(_replace, text), changed


def _remove_controls(text: str) -> str:
    return "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp") else ch
        for ch in text
    )


def normalize_text(
    text: str,
    *,
    fix_unicode: bool = True,
    mojibake: bool = True,
    urls: str = "keep",
    url_token: str = "<url>",
    mentions: str = "keep",
    mention_token: str = "@user",
) -> TextResult:
    """Repair, strip mojibake, handle URLs/mentions, then collapse whitespace."""
    original = text
    stripped = fixed = False
    if fix_unicode:
        repaired = ftfy.fix_text(text, normalization="NFC")
        if _SUSPECT_SCRIPTS.search(repaired) and not _SUSPECT_SCRIPTS.search(original):
            # Lossy mojibake fooled ftfy: strip it first, then repair what is left.
            text, stripped = strip_mojibake(text)
            repaired = ftfy.fix_text(text, normalization="NFC")
        fixed = repaired != text
        text = repaired
    if mojibake:
        text, more = strip_mojibake(text)
        stripped = stripped or more
    text = _remove_controls(text)
    if urls != "keep":
        text = URL_RE.sub(url_token if urls == "replace" else " ", text)
    if mentions != "keep":
        replacement = mention_token if mentions == "replace" else " "
        # Mentions inside a kept URL ("youtube.com/@alice") are part of the URL.
        pieces = URL_SPLIT_RE.split(text)
        text = "".join(
            piece if i % 2 else MENTION_RE.sub(replacement, piece) for i, piece in enumerate(pieces)
        )
    text = WHITESPACE_RE.sub(" ", text).strip()
    return TextResult(text=text, unicode_fixed=fixed, mojibake_stripped=stripped)


def dedup_key(text: str) -> str:
    """The key two texts share when they are exact duplicates up to case and spacing."""
    return WHITESPACE_RE.sub(" ", text.casefold()).strip()
