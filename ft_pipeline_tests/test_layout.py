"""The layout by stage: lib/ has one wing per stage, imports point down, tests mirror it.

The stack, bottom to top: state, data, model, then training and deployment side by side,
evaluation on top. A module may import its own wing and the wings below it, never one above
or beside it, and lib/ never imports Dagster (docs/development.md).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from ft_pipeline.lib.state.paths import PROJECT_ROOT

LIB = PROJECT_ROOT / "ft_pipeline" / "lib"
TESTS = PROJECT_ROOT / "ft_pipeline_tests"
LEVEL = {"state": 0, "data": 1, "model": 2, "training": 3, "deployment": 3, "evaluation": 4}
MAX_FUNCTION_LINES = 80


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, top level or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from ft_pipeline.lib.data import readers` imports the module lib.data.readers
            found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return found


def lib_modules() -> list[Path]:
    return sorted(LIB.rglob("*.py"))


def test_lib_keeps_only_its_init_and_one_package_per_wing():
    flat = sorted(p.name for p in LIB.glob("*.py"))
    assert flat == ["__init__.py"], f"modules flat in ft_pipeline/lib/: {flat}"
    wings = sorted(p.name for p in LIB.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert wings == sorted(LEVEL)
    for wing in wings:
        assert (LIB / wing / "__init__.py").is_file(), wing
        assert not [p for p in (LIB / wing).iterdir() if p.is_dir() and p.name != "__pycache__"]


@pytest.mark.parametrize("path", lib_modules(), ids=lambda p: str(p.relative_to(LIB)))
def test_lib_imports_point_down_and_never_at_dagster(path: Path):
    wing = path.relative_to(LIB).parts[0] if path.parent != LIB else None
    upward = []
    for line, module in imported_modules(path):
        assert module.split(".")[0] not in ("dagster", "dagster_mlflow", "dagster_k8s"), (
            f"{path.relative_to(PROJECT_ROOT)}:{line} imports {module}: lib/ stays Dagster-free"
        )
        parts = module.split(".")
        if wing is None or parts[:2] != ["ft_pipeline", "lib"] or len(parts) < 3:
            continue
        target = parts[2]
        if target != wing and LEVEL[target] >= LEVEL[wing]:
            upward.append(f"{path.relative_to(PROJECT_ROOT)}:{line} ({wing}) imports {module}")
    assert not upward, "imports must point down the stack:\n" + "\n".join(upward)


def test_every_lib_wing_has_its_test_folder():
    for wing in LEVEL:
        folder = TESTS / wing
        assert (folder / "__init__.py").is_file(), f"no test folder {folder}"
        assert list(folder.glob("test_*.py")), f"{folder} holds no tests"
    stray = sorted(p.name for p in TESTS.glob("test_lib_*.py"))
    assert not stray, f"lib tests belong in their wing's folder: {stray}"


@pytest.mark.parametrize(
    "path",
    sorted((PROJECT_ROOT / "ft_pipeline").rglob("*.py")),
    ids=lambda p: str(p.relative_to(PROJECT_ROOT)),
)
def test_no_function_over_80_lines(path: Path):
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.relative_to(PROJECT_ROOT)}: split along a seam: {long}"


def test_the_code_location_loads_without_the_heavy_libraries():
    """The webserver, the daemon and every run load the code location: torch, transformers,
    MLflow and Great Expectations load only in the steps that use them."""
    heavy = ("torch", "transformers", "datasets", "mlflow", "great_expectations", "peft")
    probe = (
        f"import sys, ft_pipeline.definitions; print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]
