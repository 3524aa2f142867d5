"""Write a starter recipe as commented YAML, validated before it lands.

PyYAML writes each value (so quoting is right: `"\\t"`, `"null"`, `'1'`); the layout and the
comments are ours, since PyYAML drops comments. The text must load back to the very mapping
it was written from, then validate with `load_recipe` from a temporary file beside the target
(so relative paths resolve as they will), then pass `check`, before it replaces the target.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ft_pipeline.recipe import Recipe, RecipeError, load_recipe, parse_recipe

WIDTH = 100
Comments = dict[tuple, str]


class InitError(ValueError):
    """A starter recipe that cannot be written; the message says why and what to pass."""


@dataclass
class Draft:
    """The recipe mapping being built, its comments, and the lines `init` prints."""

    data: dict
    comments: Comments = field(default_factory=dict)
    report: list[str] = field(default_factory=list)

    def set(self, path: tuple, value: object, why: str | None = None) -> None:
        """Set the value at `path` (sections created on the way), with its comment."""
        node = self.data
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        if why:
            self.comments[path] = why

    def recipe(self) -> Recipe:
        """The mapping so far, validated as a recipe."""
        try:
            return parse_recipe(self.data, "the starter recipe")
        except RecipeError as exc:
            raise InitError(str(exc)) from None


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6)
    return text.strip().removesuffix("...").strip()


def _above(note: str | None, pad: str) -> list[str]:
    if not note:
        return []
    return [f"{pad}# {line}" for line in textwrap.wrap(note, WIDTH - len(pad) - 2)]


def _inline(line: str, note: str | None, pad: str) -> list[str]:
    if note and len(line) + 4 + len(note) <= WIDTH:
        return [f"{line}  # {note}"]
    return [*_above(note, pad), line]


def _lines(mapping: dict, comments: Comments, path: tuple, indent: int) -> list[str]:
    pad, out = " " * indent, []
    for key, value in mapping.items():
        here, head = (*path, key), f"{pad}{_scalar(key)}:"
        note = comments.get(here)
        if isinstance(value, dict) and value:
            out += [*_above(note, pad), head, *_lines(value, comments, here, indent + 2)]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out += [*_above(note, pad), head]
            for n, entry in enumerate(value):
                entry_lines = _lines(entry, comments, (*here, n), indent + 4)
                first = next(i for i, s in enumerate(entry_lines) if not s.lstrip().startswith("#"))
                entry_lines[first] = f"{pad}  - {entry_lines[first].lstrip()}"
                out += entry_lines
        else:
            out += _inline(f"{head} {_scalar(value)}", note, pad)
    return out


def render(data: dict, comments: Comments, header: list[str]) -> str:
    """The recipe as YAML: `header` lines first, then each section with its comments.

    `comments` is keyed by the path of a key (`("model", "max_length")`): a section's comment
    goes above it, a value's at the end of its line (above it when the line would be long).
    """
    lines = [f"# {line}" if line else "#" for line in header]
    for key, value in data.items():
        section = _lines({key: value}, comments, (), 0)
        lines += ["", *section] if isinstance(value, dict) else section
    text = "\n".join(lines) + "\n"
    if yaml.safe_load(text) != data:
        raise AssertionError("the starter recipe's YAML does not load back to its mapping")
    return text


def write_validated(
    text: str, out: Path, force: bool, check: Callable[[Recipe, Path], None]
) -> Recipe:
    """Validate `text` as a recipe at `out`'s folder, run `check(recipe, folder)`, write it."""
    refuse_existing(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    try:
        recipe = load_recipe(tmp)
        check(recipe, out.parent.resolve())
        refuse_existing(out, force)
        os.replace(tmp, out)
    except RecipeError as exc:
        message = str(exc).replace(str(tmp), str(out))
        raise InitError(f"the starter recipe does not validate: {message}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return recipe


def refuse_existing(out: Path, force: bool) -> None:
    """An InitError when `out` exists and `force` is not set."""
    if out.exists() and not force:
        raise InitError(
            f"{out} already exists; pass --force to overwrite it, or --out another path"
        )
