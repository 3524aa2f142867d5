"""Propose a task and the columns behind it from a file's column statistics (`profile`).

- chat: a column whose every value is a JSON list of `{role, content}` messages;
- instruction: a prompt-like and a response-like column by name (question/answer,
  prompt/response, instruction/output, input/output, ...);
- classification: a label column, few distinct short values for many rows (named like a
  label first), and the longest string column as the text.

Without a task, the first of these the columns support wins; every choice comes with why,
and the alternatives are listed so a wrong guess is one flag away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ft_pipeline.lib.data.profile import ColumnStats, ProfileError

TASKS = ("classification", "instruction", "chat")
PROMPT_NAMES = ("prompt", "question", "instruction", "query", "input", "q", "request")
RESPONSE_NAMES = ("response", "answer", "output", "completion", "reply", "a", "answers")
LABEL_NAMES = (
    "label", "category", "class", "sentiment", "topic", "intent", "tag", "genre", "section",
    "target", "y",
)  # fmt: skip
MESSAGE_NAMES = ("messages", "conversation", "conversations", "dialog", "chat")
# A label column: at most this many distinct values, and at most this share of the rows...
MAX_LABELS = 200
MAX_LABEL_SHARE = 0.2
MAX_LABEL_CHARS = 64  # ... and short values


@dataclass(frozen=True)
class Proposal:
    """A task, its column mapping (`ColumnMapping` fields), why, and the alternatives."""

    task: str
    columns: dict[str, str | None]
    why: dict[str, str]  # field -> why this column
    alternatives: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]


def _name_rank(name: str, names: tuple[str, ...]) -> int | None:
    """Where a column name sits in `names` (exact first, then by one of its words)."""
    flat = "".join(_words(name))
    if flat in names:
        return names.index(flat)
    hits = [names.index(w) for w in _words(name) if w in names and len(w) > 1]
    return len(names) + min(hits) if hits else None


def label_candidates(stats: dict[str, ColumnStats], rows: int) -> list[ColumnStats]:
    """Columns that can be a label, best first: named like one, then fewest values."""
    limit = min(MAX_LABELS, max(2, int(rows * MAX_LABEL_SHARE)))
    found = [
        s
        for s in stats.values()
        if 2 <= s.distinct <= limit and s.mean_chars <= MAX_LABEL_CHARS and not s.messages
    ]
    big = len(LABEL_NAMES) * 2
    return sorted(found, key=lambda s: (_name_rank(s.name, LABEL_NAMES) or big, s.distinct))


def _text_candidates(stats: dict[str, ColumnStats], exclude: set[str]) -> list[ColumnStats]:
    found = [s for s in stats.values() if s.name not in exclude and not s.messages and s.filled]
    return sorted(found, key=lambda s: -s.mean_chars)


def _by_name(stats: dict[str, ColumnStats], names: tuple[str, ...], exclude: set[str]):
    ranked = [
        (rank, s) for s in stats.values() if s.name not in exclude
        for rank in [_name_rank(s.name, names)] if rank is not None
    ]  # fmt: skip
    return min(ranked, key=lambda rs: rs[0])[1] if ranked else None


def _chat(stats: dict[str, ColumnStats]) -> Proposal | None:
    found = [s for s in stats.values() if s.messages]
    if not found:
        return None
    big = len(MESSAGE_NAMES)
    best = min(found, key=lambda s: _name_rank(s.name, MESSAGE_NAMES) or big)
    why = f"every value is a JSON list of {{role, content}} messages ({best.filled} rows)"
    return Proposal("chat", _mapping(messages=best.name), {"messages": why})


def _instruction(stats: dict[str, ColumnStats], by_position: bool) -> Proposal | None:
    response = _by_name(stats, RESPONSE_NAMES, set())
    prompt = _by_name(stats, PROMPT_NAMES, {response.name} if response else set())
    if prompt and response:
        why = "named like a {} (names like {})"
        return Proposal(
            "instruction",
            _mapping(prompt=prompt.name, response=response.name),
            {
                "prompt": why.format("prompt", "/".join(PROMPT_NAMES[:5])),
                "response": why.format("response", "/".join(RESPONSE_NAMES[:5])),
            },
        )
    texts = _text_candidates(stats, set())
    if not by_position or len(texts) < 2:
        return None
    first, second = sorted(texts[:2], key=lambda s: list(stats).index(s.name))
    why = "no column is named like a {}: the {} of the two longest text columns"
    return Proposal(
        "instruction",
        _mapping(prompt=first.name, response=second.name),
        {"prompt": why.format("prompt", "first"), "response": why.format("response", "second")},
    )


def _classification(stats: dict[str, ColumnStats], rows: int) -> Proposal | None:
    labels = label_candidates(stats, rows)
    if not labels:
        return None
    label = labels[0]
    named = _name_rank(label.name, LABEL_NAMES) is not None
    texts = _text_candidates(stats, {label.name})
    if not texts:
        return None
    text = texts[0]
    why_label = f"{label.distinct} distinct values in {rows} rows" + (
        "; named like a label" if named else "; the fewest distinct values"
    )
    why_text = f"the longest text column (mean {text.mean_chars:,.0f} chars)"
    alternatives = [f"label: {s.name!r} ({s.distinct} values)" for s in labels[1:4]]
    alternatives += [f"text: {s.name!r} (mean {s.mean_chars:,.0f} chars)" for s in texts[1:4]]
    return Proposal(
        "classification",
        _mapping(text=text.name, label=label.name),
        {"text": why_text, "label": why_label},
        alternatives,
    )


def _mapping(**columns: str) -> dict[str, str | None]:
    """A full ColumnMapping: the named fields, every other one null (so nothing stray maps)."""
    fields = ("text", "label", "confidence", "prompt", "response", "messages")
    return {f: columns.get(f) for f in fields}


def propose(stats: dict[str, ColumnStats], rows: int, task: str | None = None) -> Proposal:
    """The task (given, or inferred: chat, then instruction, then classification) and its
    columns; a ProfileError naming the columns seen and what to pass when none fit."""
    if len(stats) < 2 and not any(s.messages for s in stats.values()):
        raise ProfileError(
            f"the file has one column ({_seen(stats)}); init needs two (text and label, or "
            "prompt and response) or one column of chat messages: check the delimiter, or "
            "add the missing column"
        )
    builders = {
        "chat": lambda: _chat(stats),
        "instruction": lambda: _instruction(stats, by_position=task == "instruction"),
        "classification": lambda: _classification(stats, rows),
    }
    order = [task] if task else list(builders)
    for name in order:
        proposal = builders[name]()
        if proposal is not None:
            others = [(t, builders[t]()) for t in TASKS if t != name]
            more = [
                f"--task {t} ({', '.join(f'{f} {c!r}' for f, c in p.columns.items() if c)})"
                for t, p in others
                if p is not None
            ]
            return Proposal(
                proposal.task,
                proposal.columns,
                proposal.why,
                proposal.alternatives + more,
                [c for c in stats if c not in proposal.columns.values()],
            )
    raise ProfileError(_no_task(stats, rows, task))


def _seen(stats: dict[str, ColumnStats]) -> str:
    return ", ".join(
        f"{s.name!r} ({s.distinct} distinct, mean {s.mean_chars:,.0f} chars)"
        for s in stats.values()
    )


def _no_task(stats: dict[str, ColumnStats], rows: int, task: str | None) -> str:
    limit = min(MAX_LABELS, max(2, int(rows * MAX_LABEL_SHARE)))
    label_rule = (
        f"a label column has 2 to {limit} distinct values of at most {MAX_LABEL_CHARS} chars"
    )
    seen = f"columns seen: {_seen(stats)}"
    if task == "chat":
        sharegpt = [s.name for s in stats.values() if s.sharegpt]
        hint = (
            f"; {sharegpt[0]!r} holds ShareGPT turns ({{from, value}}): convert them to "
            "{role, content}"
            if sharegpt
            else ""
        )
        return f"no column of chat messages (a JSON list of {{role, content}}){hint}; {seen}"
    if task == "classification":
        return (
            f"no usable label column ({label_rule} in {rows} rows); {seen}. "
            "If the file pairs prompts with answers, pass --task instruction"
        )
    if task == "instruction":
        return f"no prompt and response columns; {seen}"
    return (
        f"could not tell the task: no column of chat messages, no prompt/response pair "
        f"(names like question/answer, prompt/response, instruction/output), and no label "
        f"column ({label_rule}); {seen}. Pass --task instruction to take the two longest "
        "text columns as prompt and response, or rename the columns"
    )
