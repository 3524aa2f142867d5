"""`ft-pipeline init`: a starter recipe from a data file, with every choice explained.

`lib/data/profile.py` reads the file the pipeline's way; `lib/data/proposal.py` and
`lib/data/label_folding.py` pick the task, columns and labels; cleaning measures the texts
as the pipeline will clean them; `lib/model/sizing.py` picks the model and the sizes from
token lengths measured with that model's tokenizer. This module puts the answers into a
recipe with a comment on each choice (`init_yaml.py`) and validates it before writing.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pandas as pd

from ft_pipeline.init_model import size_model
from ft_pipeline.init_yaml import Draft, InitError, refuse_existing, render, write_validated
from ft_pipeline.lib.data.cleaning import clean_frame
from ft_pipeline.lib.data.label_folding import LabelSet, fold_labels
from ft_pipeline.lib.data.profile import ProfileError, Sniffed, column_stats, sniff
from ft_pipeline.lib.data.proposal import Proposal, propose
from ft_pipeline.lib.data.readers import MB, csv_delimiter, read_source
from ft_pipeline.lib.data.sources import SourceError, configured_keys, detect_format, resolve
from ft_pipeline.lib.state.paths import PROJECT_ROOT
from ft_pipeline.recipe import CleaningConfig, QualityConfig, Recipe

CLEAN_SAMPLE = 5000  # rows cleaned to measure text lengths and what cleaning quarantines
INPUT = {"classification": "text", "instruction": "prompt", "chat": "messages"}
MIN_SHARE = QualityConfig().min_label_share
DEFAULT_MAX_CHARS = CleaningConfig().max_chars
SECTIONS = list(Recipe.model_fields)  # the order the recipe reference lists them in

__all__ = ["InitError", "init_recipe"]


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def target(data: Path, out: Path | None, name: str | None) -> tuple[str, Path]:
    """The recipe's name (from the file's name unless given) and where it is written."""
    name = name or re.sub(r"[^a-z0-9_-]+", "_", data.stem.lower()).strip("_-") or "my_task"
    if not re.fullmatch(r"[a-z0-9][a-z0-9_\-]*", name):
        raise InitError(f"--name {name!r}: use lower case letters, digits, '_' and '-'")
    return name, out or Path("recipes") / f"{name}.yaml"


def init_recipe(
    data: Path,
    cache_root: Path,
    task: str | None = None,
    out: Path | None = None,
    name: str | None = None,
    force: bool = False,
) -> tuple[Path, list[str]]:
    """Profile `data`, write a validated starter recipe; (its path, the lines to print)."""
    name, out = target(data, out, name)
    refuse_existing(out, force)
    try:
        sniffed = sniff(data)
        proposal = propose(column_stats(sniffed.frame), len(sniffed.frame), task)
    except ProfileError as exc:
        message = str(exc)
        raise InitError(
            message if message.startswith(str(data)) else f"{data}: {message}"
        ) from None
    draft = Draft({"name": name, "task": proposal.task})
    _describe(draft, sniffed, proposal, task)
    if proposal.task == "classification":
        _labels(draft, fold_labels(sniffed.frame[proposal.columns["label"]]))
    _data(draft, sniffed, proposal, out)
    kept = _cleaning(draft, sniffed, proposal)
    size_model(draft, kept, cache_root, cuda_available())
    header = [
        f"Starter recipe written by `ft-pipeline init` from {data}.",
        "Each choice says what it was measured on; change any freely (every field, with its",
        "default: docs/recipe-reference.md). Fields not written keep their defaults.",
        f"Run it: ft-pipeline --recipe {out} run   (or: make run RECIPE={for_make(out)})",
    ]
    draft.data = {k: draft.data[k] for k in sorted(draft.data, key=SECTIONS.index)}
    text = render(draft.data, draft.comments, header)
    write_validated(text, out, force, lambda recipe, folder: _reads_back(sniffed, recipe, folder))
    draft.report.append(
        f"wrote {out} (validated: it loads, and its source reads back {len(sniffed.frame)} rows)"
    )
    return out, draft.report


def for_make(out: Path) -> str:
    """The recipe path as `make` (run in the project folder) needs it."""
    path = out.resolve()
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)


def _describe(draft: Draft, sniffed: Sniffed, proposal: Proposal, task: str | None) -> None:
    rows, columns = len(sniffed.frame), sniffed.columns
    draft.report.append(f"read {sniffed.path}: {rows:,} rows, columns {columns}")
    draft.report += [f"  {note}" for note in sniffed.notes]
    how = "from --task" if task else "inferred from the columns"
    draft.report.append(f"task: {proposal.task} ({how})")
    draft.comments[("task",)] = f"{how}: " + "; ".join(
        f"{f} {proposal.columns[f]!r}" for f in proposal.why
    )
    for f, why in proposal.why.items():
        draft.report.append(f"  {f} <- {proposal.columns[f]!r}: {why}")
    if proposal.alternatives:
        draft.report.append(f"  alternatives: {'; '.join(proposal.alternatives)}")
    if proposal.unused:
        draft.report.append(f"  not used (kept in raw_data only): {proposal.unused}")


def _labels(draft: Draft, found: LabelSet) -> None:
    if len(found.counts) < 2:
        raise InitError(
            f"the label column holds {len(found.counts)} label(s) {found.labels}: "
            "classification needs at least two; pass --task instruction if the file "
            "pairs prompts with answers"
        )
    counts = ", ".join(f"{k} {v}" for k, v in found.counts.items())
    draft.set(("labels",), found.labels, f"{len(found.counts)} labels (rows): {counts}")
    draft.report.append(f"labels ({len(found.counts)}): {counts}")
    if found.aliases:
        draft.set(
            ("label_aliases",),
            dict(found.aliases),
            "other spellings found, each folded into its label's most frequent spelling",
        )
        for alias, label in found.aliases.items():
            why = f"{found.spellings[alias]} rows; differs from {label!r} by {found.why[alias]}"
            draft.comments[("label_aliases", alias)] = why
            draft.report.append(f"  folded {alias!r} into {label!r} ({why})")
    for short, long in found.kept_apart:
        draft.report.append(
            f"  not folded: {short!r} and {long!r} (both common; if they are one label, "
            "add a label_aliases entry)"
        )
    rare = found.rare(MIN_SHARE)
    if rare:
        floor = max(0.001, math.floor(min(rare.values()) * 500) / 1000)
        shown = ", ".join(f"{k} {v:.1%}" for k, v in rare.items())
        why = (
            f"lowered from {MIN_SHARE}: rare labels {shown}; add rows of them, or fold them "
            "into another label with label_aliases, then raise it back"
        )
        draft.set(("quality", "min_label_share"), floor, why)
        draft.report.append(f"  rare labels (below {MIN_SHARE} of the rows): {shown}")
    if found.missing:
        draft.report.append(f"  {found.missing} rows have no label (quarantined by cleaning)")


def _data(draft: Draft, sniffed: Sniffed, proposal: Proposal, out: Path) -> None:
    folder, path = out.parent.resolve(), sniffed.path.resolve()
    source: dict[str, object] = {"path": os.path.relpath(path, folder)}
    if not path.is_relative_to(folder):
        root = os.path.relpath(path.parent, folder)
        draft.set(
            ("data", "source_root"),
            root,
            "the data file's folder, relative to this recipe's: source paths must stay in it",
        )
    draft.set(("data", "sources"), [source], "one partition per source file")
    try:
        by_extension = detect_format(path)
    except SourceError:
        by_extension = None
    if by_extension != sniffed.format:
        source["format"] = sniffed.format
        draft.comments[("data", "sources", 0, "format")] = sniffed.notes[0]
    if sniffed.delimiter is not None and sniffed.delimiter != csv_delimiter(path):
        source["delimiter"] = sniffed.delimiter
        draft.comments[("data", "sources", 0, "delimiter")] = sniffed.notes[-1]
    columns = {k: v for k, v in proposal.columns.items()}
    draft.set(("data", "columns"), columns, "file column of each field (null: none)")
    for f, why in proposal.why.items():
        draft.comments[("data", "columns", f)] = why
    why = next((n for n in sniffed.notes if n.startswith("encoding")), None)
    draft.set(("data", "encoding"), sniffed.encoding, why)
    size = path.stat().st_size / MB
    if size > 100:
        draft.set(("data", "max_file_mb"), math.ceil(size * 1.2), f"the file is {size:.0f} MB")


def _nice(value: float) -> int:
    """Round up to two significant digits: 27,478 -> 28,000."""
    step = 10 ** max(0, int(math.log10(max(1.0, value))) - 1)
    return int(math.ceil(value / step) * step)


def _cleaning(draft: Draft, sniffed: Sniffed, proposal: Proposal) -> pd.DataFrame:
    """Clean a sample as the pipeline will; set cleaning.max_chars; return the clean rows."""
    draft.set(("cleaning", "max_chars"), 10**9)
    draft.set(("cleaning", "near_duplicate_threshold"), None)
    _prompt(draft, proposal.task)
    recipe = draft.recipe()
    frame = sniffed.frame
    sample = frame.sample(min(len(frame), CLEAN_SAMPLE), random_state=0).sort_index()
    result = clean_frame(sample, recipe, recipe.data.columns, "init")
    raw = frame[proposal.columns[INPUT[proposal.task]]].dropna().astype(str).str.len()
    clean = result.kept["text"].str.len()
    longest = int(max(raw.max(), clean.max() if len(clean) else 0))
    p999 = float(raw.quantile(0.999))
    value = max(DEFAULT_MAX_CHARS, _nice(longest * 1.25))
    why = f"longest text {longest:,} chars (p99 {raw.quantile(0.99):,.0f}): no row is too long"
    if len(raw) >= 1000 and longest > 3 * p999:
        value = _nice(p999 * 1.1)
        over = int((raw > value).sum())
        why = (
            f"p99.9 of texts {p999:,.0f} chars; {over} longer outliers (up to {longest:,}) "
            "are quarantined as too long"
        )
    del draft.data["cleaning"]["near_duplicate_threshold"]
    draft.set(("cleaning", "max_chars"), value, why)
    draft.report.append(f"texts: {why}; cleaning.max_chars {value:,}")
    reasons = result.reasons()
    if reasons:
        share = f" of a {len(sample):,}-row sample" if len(sample) < len(frame) else ""
        shown = ", ".join(f"{k} {v}" for k, v in reasons.items())
        draft.report.append(f"  cleaning will quarantine (as measured{share}): {shown}")
    return result.kept


def _prompt(draft: Draft, task: str) -> None:
    if task == "instruction":
        why = "the prompt column as the user message; wrap it in an instruction if you like"
        draft.set(("prompt", "template"), "{prompt}", why)


def _reads_back(sniffed: Sniffed, recipe: Recipe, folder: Path) -> None:
    """The written recipe's source reads the very rows profiled here."""
    [key] = configured_keys(recipe)
    try:
        source = resolve(key, recipe, folder, folder / "incoming")
        frame = read_source(source, recipe.data.max_file_mb)
    except (SourceError, ValueError) as exc:
        raise InitError(f"the starter recipe's source does not read back: {exc}") from None
    if list(frame.columns) != list(sniffed.frame.columns) or len(frame) != len(sniffed.frame):
        raise InitError(
            f"the starter recipe reads {source.path} as {len(frame)} rows of "
            f"{list(frame.columns)}, not {len(sniffed.frame)} of {list(sniffed.frame.columns)}"
        )
