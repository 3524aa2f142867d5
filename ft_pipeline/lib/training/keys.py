"""Cache keys: an adapter is reused when nothing that shaped it has changed.

key = hash(data version, training recipe hash, base model hash, code version)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ft_pipeline.lib.model.base_models import BUNDLED_MODELS, package_file
from ft_pipeline.lib.state.fingerprint import code_fingerprint, module_closure
from ft_pipeline.lib.state.paths import file_sha256
from ft_pipeline.recipe import DistributedConfig, Recipe

# Training starts here (the asset and the CLI call its `fit_adapter`; distributed workers are
# launched from it). Every project module it imports, at any depth, is in the code key.
TRAINING_ENTRY = "ft_pipeline.lib.training.job"
ADAPTER_KEY_COVERS = (
    "data version (clean partitions, tokenization, each row's split); recipe sections lora, "
    "training (but distributed), model, prompt, task, labels; the base model's weights; the "
    "code of every module training imports"
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def _sha(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def code_version(root: Path | None = None) -> str:
    """Version of the training code: the package version and the source of every module
    the training entry imports (`root`: the package folder, default the installed one)."""
    return code_fingerprint([TRAINING_ENTRY], root)


def training_modules(root: Path | None = None) -> list[str]:
    """The modules `code_version` covers, dotted."""
    return list(module_closure([TRAINING_ENTRY], root))


def base_model_hash(spec: str) -> str:
    """Content hash of the base model's weights (bundled file, local folder, or the id)."""
    if spec in BUNDLED_MODELS:
        package, suffix = BUNDLED_MODELS[spec]
        found = package_file(package, suffix)
        folder = found if suffix == ".gguf" else found.parent
        return base_model_hash(str(folder))
    path = Path(spec).expanduser()
    if path.is_file():
        return file_sha256(path)[:16]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
        files += [path / "config.json"] if (path / "config.json").is_file() else []
        return _sha({str(p.relative_to(path)): file_sha256(p) for p in files})
    return _sha({"hub_id": spec})


def training_hash(recipe: Recipe) -> str:
    """The recipe sections that shape training (data ones are in the data version).

    `training.distributed` is left out: like the device, how many processes train changes
    the speed, not the adapter (the same steps over the same rows; see `distributed`).
    """
    alone = recipe.training.model_copy(update={"distributed": DistributedConfig()})
    recipe = recipe.model_copy(update={"training": alone})
    return recipe.content_hash("lora", "training", "model", "prompt", "task", "labels")


def adapter_key(data_version: str, recipe: Recipe, base_hash: str, code: str) -> str:
    return _sha(
        {"data": data_version, "recipe": training_hash(recipe), "base": base_hash, "code": code}
    )
