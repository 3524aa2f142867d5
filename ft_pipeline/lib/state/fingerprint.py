"""Code fingerprints: the source of every project module a piece of work can run.

A cache key that covers "the code" must not depend on a hand-kept list of files: a new
module, or an existing one imported from a new place, would be left out and its edits
would serve stale results. `module_closure` reads the sources (it imports nothing) and
follows every `import` of the package, at module level or inside a function, from the
entry modules; `code_fingerprint` hashes what it finds.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import ft_pipeline

PACKAGE = "ft_pipeline"


def _module_file(root: Path, name: str) -> Path | None:
    """The source file of module `name` (dotted, inside PACKAGE) under `root`, if any."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Dotted names this module imports (a `from X import y` gives X and X.y)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package upwards
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                source = ".".join(anchor + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def module_closure(entries: Iterable[str], root: Path | None = None) -> dict[str, Path]:
    """Every PACKAGE module the entry modules import, directly or not, with its file.

    Parent packages are included (importing `a.b.c` runs `a/__init__.py` and
    `a/b/__init__.py`). `root` is the package folder (default: the installed one).
    """
    root = Path(ft_pipeline.__file__).parent if root is None else root
    found: dict[str, Path] = {}
    todo = list(entries)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for depth in range(1, len(parts)):  # importing a module runs its parents' __init__
            parent = ".".join(parts[:depth])
            if parent not in found:
                todo.append(parent)
        path = _module_file(root, name)
        if path is None or name in found:
            continue
        found[name] = path
        tree = ast.parse(path.read_text(), filename=str(path))
        todo.extend(_imported_names(tree, name, path.name == "__init__.py") - set(found))
    return dict(sorted(found.items()))


def code_fingerprint(entries: Iterable[str], root: Path | None = None) -> str:
    """A hash of the package version and the source of every module in the closure."""
    sources = {name: path.read_text() for name, path in module_closure(entries, root).items()}
    payload = {"version": ft_pipeline.__version__, "sources": sources}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
