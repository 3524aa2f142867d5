"""Fold spellings of the same label together: 'Sport', 'sports' and ' sport' are 'sport'.

Each group of spellings becomes one label, named by its most frequent spelling; the others
become `label_aliases`. Spellings are grouped when they differ only by case or spacing (which
cleaning ignores anyway), by punctuation, by a plural 's', or when one is a clear prefix of
another ('tech' of 'technology', 'neg' of 'negative') and the rarer of the two is a small
share of the other: two common labels are never folded by prefix, only reported.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

PUNCTUATION = re.compile(r"[\W_]+")
MIN_PREFIX = 3
# A prefix fold needs the rarer spelling to hold at most this share of the other's rows.
PREFIX_RARITY = 0.25


@dataclass(frozen=True)
class LabelSet:
    """The labels a column holds, after folding spellings."""

    counts: dict[str, int]  # label -> rows, most frequent first
    aliases: dict[str, str]  # other spelling -> label
    why: dict[str, str]  # other spelling -> what differs ("case", "plural", ...)
    spellings: dict[str, int]  # every spelling as found -> rows
    kept_apart: list[tuple[str, str]] = field(default_factory=list)  # prefix pairs, both common
    missing: int = 0  # rows without a label

    @property
    def labels(self) -> list[str]:
        return list(self.counts)

    def rare(self, min_share: float) -> dict[str, float]:
        """Labels under `min_share` of the labelled rows, with their share."""
        total = max(1, sum(self.counts.values()))
        return {k: v / total for k, v in self.counts.items() if v / total < min_share}


def _spacing(label: str) -> str:
    return " ".join(label.split()).casefold()


def _bare(label: str) -> str:
    return PUNCTUATION.sub("", _spacing(label)) or _spacing(label)


def _singular(label: str) -> str:
    key = _bare(label)
    return key[:-1] if len(key) > MIN_PREFIX and key.endswith("s") and key[-2] != "s" else key


STAGES = (("case or spacing", _spacing), ("punctuation", _bare), ("plural", _singular))


def fold_labels(values: Iterable[object]) -> LabelSet:
    """Group the spellings of `values` (None or blank: no label) into labels."""
    spellings: Counter[str] = Counter()
    missing = 0
    for value in values:
        text = "" if value is None else str(value).strip()
        if text:
            spellings[text] += 1
        else:
            missing += 1
    # Each group: its spellings; a spelling joins the group of the first spelling it matches.
    group_of = {s: s for s in spellings}
    for _, key in STAGES:
        _merge(spellings, group_of, key)
    kept_apart = _merge_prefixes(spellings, group_of)
    groups: dict[str, Counter[str]] = {}
    for spelling, head in group_of.items():
        groups.setdefault(_root(group_of, head), Counter())[spelling] = spellings[spelling]
    counts, aliases = {}, {}
    for members in groups.values():
        name = max(members, key=lambda s: (members[s], -len(s), s))
        counts[name] = sum(members.values())
        aliases |= {s: name for s in members if s != name}
    counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    why = {s: _difference(s, name) for s, name in aliases.items()}
    return LabelSet(counts, aliases, why, dict(spellings.most_common()), kept_apart, missing)


def _root(group_of: dict[str, str], spelling: str) -> str:
    while group_of[spelling] != spelling:
        spelling = group_of[spelling]
    return spelling


def _difference(spelling: str, label: str) -> str:
    """What tells a spelling from its label: the first stage that maps both to one key."""
    return next((reason for reason, key in STAGES if key(spelling) == key(label)), "prefix")


def _merge(spellings, group_of, key) -> None:
    first: dict[str, str] = {}
    for spelling, _ in spellings.most_common():
        k = key(spelling)
        if k in first:
            a, b = _root(group_of, first[k]), _root(group_of, spelling)
            if a != b:
                group_of[b] = a
        else:
            first[k] = spelling


def _merge_prefixes(spellings, group_of) -> list[tuple[str, str]]:
    """Fold a group whose key is a prefix of exactly one other group's key, when it is rare
    beside it; return the pairs left apart because both are common."""
    totals: Counter[str] = Counter()
    for spelling, n in spellings.items():
        totals[_root(group_of, spelling)] += n
    keys = {head: _singular(head) for head in totals}
    kept_apart = []
    for short, key in sorted(keys.items(), key=lambda kv: len(kv[1])):
        if len(key) < MIN_PREFIX:
            continue
        longer = [h for h, k in keys.items() if h != short and k.startswith(key) and k != key]
        if len(longer) != 1:
            continue
        [long] = longer
        a, b = _root(group_of, short), _root(group_of, long)
        if a == b:
            continue
        small, large = sorted((totals[a], totals[b]))
        if small > PREFIX_RARITY * large:
            kept_apart.append((short, long))
            continue
        rare, common = (a, b) if totals[a] <= totals[b] else (b, a)
        group_of[rare] = common
        totals[common] += totals.pop(rare)
    return kept_apart
