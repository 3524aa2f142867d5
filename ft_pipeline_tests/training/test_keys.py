"""Cache keys cover all the code: the module set is derived from the imports, not listed.

Each test copies the installed package into a temp folder, edits a function in one module
of the copy and hashes the copy: the key must change exactly when a module that training
(or evaluation) runs is edited.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import ft_pipeline
from ft_pipeline.lib.evaluation.job import EVALUATION_ENTRY, evaluation_key
from ft_pipeline.lib.state.fingerprint import module_closure
from ft_pipeline.lib.training.keys import code_version, training_modules
from ft_pipeline.recipe import parse_recipe
from ft_pipeline_tests.conftest import LABELS

# Modules a hand-kept list once missed: the classifier loss and collate, the LoRA config,
# FSDP sharding, checkpoints and the distributed worker.
ONCE_MISSED = [
    "ft_pipeline.lib.model.heads",
    "ft_pipeline.lib.model.lora",
    "ft_pipeline.lib.training.sharding",
    "ft_pipeline.lib.training.checkpoints",
    "ft_pipeline.lib.training.worker",
]


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A copy of the ft_pipeline package, to edit."""
    copy = tmp_path / "ft_pipeline"
    shutil.copytree(Path(ft_pipeline.__file__).parent, copy, ignore=shutil.ignore_patterns("*.pyc"))
    return copy


def module_path(root: Path, module: str) -> Path:
    return root.joinpath(*module.split(".")[1:]).with_suffix(".py")


def edit_a_function(path: Path) -> None:
    """Change the body of the first function in the file (a real code edit)."""
    source = "\n" + path.read_text()
    start = source.index("\ndef ")
    body = source.index(":\n", start) + 2
    path.write_text(source[1:body] + "    _edited = True  # noqa\n" + source[body:])


def test_the_training_key_covers_every_module_training_imports():
    modules = training_modules()
    assert set(ONCE_MISSED) <= set(modules)
    assert "ft_pipeline.lib.training.loop" in modules and "ft_pipeline.recipe" in modules
    # Serving and deployment do not shape an adapter: editing them keeps adapters.
    assert not any(m.startswith("ft_pipeline.lib.deployment") for m in modules)
    assert not any(m.startswith("ft_pipeline.defs") for m in modules)


def test_the_copy_hashes_like_the_installed_package(package: Path):
    assert code_version(package) == code_version()
    assert list(module_closure([EVALUATION_ENTRY], package)) == list(
        module_closure([EVALUATION_ENTRY])
    )


@pytest.mark.parametrize("module", [*ONCE_MISSED, "ft_pipeline.lib.training.loop"])
def test_editing_a_training_module_changes_the_adapter_key(package: Path, module: str):
    before = code_version(package)
    edit_a_function(module_path(package, module))
    assert code_version(package) != before


def test_a_new_module_imported_inside_a_function_joins_the_key(package: Path):
    (package / "lib" / "model" / "extra_loss.py").write_text("def weight():\n    return 1.0\n")
    heads = package / "lib" / "model" / "heads.py"
    heads.write_text(
        heads.read_text()
        + "\n\ndef _extra():\n    from ft_pipeline.lib.model import extra_loss\n\n"
        + "    return extra_loss.weight()\n"
    )
    assert "ft_pipeline.lib.model.extra_loss" in training_modules(package)
    before = code_version(package)
    edit_a_function(package / "lib" / "model" / "extra_loss.py")
    assert code_version(package) != before


def test_editing_serving_keeps_the_adapter_key(package: Path):
    before = code_version(package)
    edit_a_function(module_path(package, "ft_pipeline.lib.deployment.serving"))
    assert code_version(package) == before


def test_editing_the_metrics_changes_the_evaluation_key_not_the_adapter_key(package: Path):
    recipe = parse_recipe(
        {"name": "r", "task": "classification", "labels": LABELS, "model": {"base": "x"}}
    )
    adapter, before = code_version(package), evaluation_key("k", recipe, "rows", package)
    edit_a_function(module_path(package, "ft_pipeline.lib.evaluation.metrics"))
    assert evaluation_key("k", recipe, "rows", package) != before
    assert code_version(package) == adapter
    more_rows = recipe.model_copy(
        update={"evaluation": recipe.evaluation.model_copy(update={"max_test_rows": 7})}
    )
    assert evaluation_key("k", more_rows, "rows", package) != evaluation_key(
        "k", recipe, "rows", package
    )
    assert evaluation_key("k", recipe, "other rows", package) != evaluation_key(
        "k", recipe, "rows", package
    )
