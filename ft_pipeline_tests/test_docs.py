"""The README and docs/: the generated recipe reference is current, every recipe field is
described, the README stays short, and every link and module path points to a real file."""

from __future__ import annotations

import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from ft_pipeline.cli import main
from ft_pipeline.recipe import Recipe
from ft_pipeline.recipe_reference import REFERENCE_PATH, render_reference

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
STALE = "docs/recipe-reference.md is stale: run `make docs`"

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def _model_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, FieldInfo) of every field of the recipe, nested models included."""
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        yield path, field
        for nested, suffix in _models_in(field.annotation):
            yield from _model_fields(nested, f"{path}{suffix}.")


def _models_in(annotation: Any, suffix: str = "") -> Iterator[tuple[type[BaseModel], str]]:
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, suffix
    elif origin is Annotated:
        yield from _models_in(get_args(annotation)[0], suffix)
    elif origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            yield from _models_in(arg, suffix)
    elif origin is list:
        yield from _models_in(get_args(annotation)[0], suffix + "[]")


RECIPE_FIELDS = list(_model_fields(Recipe))


def _prose(text: str) -> str:
    """Markdown without fenced blocks and code spans, where a link is only an example."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def _links(page: Path) -> list[str]:
    text = _prose(page.read_text(encoding="utf-8"))
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def _relative(target: str) -> bool:
    return not re.match(r"^([a-z][a-z0-9+.-]*:|#)", target)


def _resolve(page: Path, target: str) -> Path:
    return (page.parent / target.split("#", 1)[0]).resolve()


def test_committed_reference_is_current():
    committed = (ROOT / REFERENCE_PATH).read_text(encoding="utf-8")
    assert committed == render_reference(), STALE


def test_reference_is_deterministic():
    assert render_reference() == render_reference()
    assert not re.search(r"\d{4}-\d{2}-\d{2}", render_reference())


def test_walk_reaches_every_section():
    """The walk behind the two tests below sees nested, optional and listed sections."""
    paths = {path for path, _ in RECIPE_FIELDS}
    assert {"name", "data.sources[].columns.text", "training.distributed.strategy"} <= paths
    assert len(paths) > 80


@pytest.mark.parametrize("path,field", RECIPE_FIELDS, ids=[p for p, _ in RECIPE_FIELDS])
def test_every_field_is_described_and_in_the_reference(path: str, field: Any):
    assert field.description and field.description.strip(), f"{path} has no description"
    reference = render_reference()
    row = next((line for line in reference.splitlines() if line.startswith(f"| `{path}` |")), "")
    assert row, f"{path} is missing from the recipe reference"
    assert " ".join(field.description.split()).replace("|", "\\|") in row


def test_reference_shows_defaults_choices_and_bounds():
    rows = {line.split(" | ")[0].strip("| `"): line for line in render_reference().splitlines()}
    assert '`"replace"` | `"keep"`, `"replace"`, `"remove"`' in rows["cleaning.urls"]
    assert "`0.0 <= x < 1.0`" in rows["lora.dropout"]
    assert "`1 <= x <= 512`" in rows["training.distributed.processes"]
    assert "`x >= 100`" in rows["evaluation.bootstrap_samples"]
    assert "required" in rows["name"] and "matches `^[a-z0-9]" in rows["name"]
    assert '`["q_proj", "k_proj", "v_proj", "o_proj"]`' in rows["lora.target_modules"]
    assert "int or null" in rows["training.max_steps"]


def test_cli_prints_the_reference():
    result = subprocess.run(
        [sys.executable, "-m", "ft_pipeline.cli", "recipe-reference"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_reference()


def test_cli_writes_the_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "sub" / "reference.md"
    assert main(["recipe-reference", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render_reference()
    assert str(out) in capsys.readouterr().out


def test_make_docs_writes_the_reference_with_the_cli():
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^docs: \$\(STAMP\)\n\t(.+)$", makefile, re.MULTILINE)
    assert target, "Makefile has no `docs: $(STAMP)` target"
    assert target.group(1) == "$(BIN)/ft-pipeline recipe-reference --out docs/recipe-reference.md"
    assert re.search(r"^\.PHONY:.* docs ", makefile, re.MULTILINE)


def test_readme_is_short_and_names_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 250
    assert "make run" in text and "make test" in text


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_relative_links_point_to_files(page: Path):
    links = [t for t in _links(page) if _relative(t)]
    assert links, f"{page.name} links to nothing"
    broken = [t for t in links if not _resolve(page, t).is_file()]
    assert not broken, f"{page.name}: links to missing files: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    assert PAGES, "docs/ has no pages"
    linked = {_resolve(README, t) for t in _links(README) if _relative(t)}
    unlinked = [p.name for p in PAGES if p.resolve() not in linked]
    assert not unlinked, f"README.md does not link {unlinked}"


# A module path (`lib/model/heads.py`, `ft_pipeline/defs/automation.py`), a project file
# (`bench/distributed.py`, `deploy/k8s/executor.yaml`), or a dotted module name.
PROJECT_PATH = re.compile(
    r"(?<![\w./<-])((?:ft_pipeline/)?(?:lib|defs)/[\w/]+\.py|ft_pipeline/[\w/]+\.py"
    r"|(?:bench|deploy|recipes)/[\w/.-]+\.(?:py|yaml)|deploy/Dockerfile)\b"
)
MODULE_NAME = re.compile(r"\bft_pipeline(?:\.\w+)+")
EXAMPLES = {"recipes/my_task.yaml"}  # a recipe the reader writes


def _module_exists(name: str) -> bool:
    """A dotted name is a module or package, or a name defined in one."""
    *parent, last = name.split(".")
    base = ROOT.joinpath(*parent, last)
    if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
        return True
    owner = ROOT.joinpath(*parent)
    source = owner.with_suffix(".py")
    source = source if source.is_file() else owner / "__init__.py"
    return source.is_file() and re.search(rf"\b{last}\b", source.read_text()) is not None


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda p: p.name)
def test_named_files_and_modules_exist(page: Path):
    """Every module or project file a page names exists, so the docs follow the layout."""
    text = page.read_text(encoding="utf-8")
    named = set(PROJECT_PATH.findall(text)) - EXAMPLES
    missing = [
        path
        for path in sorted(named)
        if not (ROOT / path).is_file() and not (ROOT / "ft_pipeline" / path).is_file()
    ]
    missing += sorted({m for m in MODULE_NAME.findall(text) if not _module_exists(m)})
    assert not missing, f"{page.name} names files or modules that do not exist: {missing}"


def test_development_page_lists_modules_of_each_wing():
    """The wing table of docs/development.md names a real module in every row."""
    rows = re.findall(
        r"^\| `lib/(\w+)/` \|.*\| (.*) \|$", (DOCS / "development.md").read_text(), re.M
    )
    wings = sorted(
        p.name
        for p in (ROOT / "ft_pipeline" / "lib").iterdir()
        if p.is_dir() and (p / "__init__.py").is_file()
    )
    assert sorted(w for w, _ in rows) == wings
    for wing, cell in rows:
        modules = re.findall(r"`(\w+\.py)`", cell)
        assert modules, wing
        missing = [m for m in modules if not (ROOT / "ft_pipeline" / "lib" / wing / m).is_file()]
        assert not missing, (
            f"docs/development.md lists lib/{wing}/ modules that do not exist: {missing}"
        )
