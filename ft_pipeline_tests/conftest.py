"""Shared fixtures: a tiny tokenizer and model built in code, fixture corpora, recipes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.tracking._tracking_service import utils as tracking_utils

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def pytest_configure(config: pytest.Config) -> None:
    """Under `pytest -n N` (make test), each worker's torch keeps to one thread: N workers on
    N cores, instead of N x cores threads fighting over them."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup` xdist schedules by the `@group` suffix of node ids; pytest
    9.2 dropped it, so the live tests (one `dagster dev` at a time) ran side by side: fail."""
    if not (os.environ.get("PYTEST_XDIST_WORKER") and config.getoption("loadgroup", False)):
        return
    lost = [i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        message = (
            f"pytest-xdist could not tag {len(lost)} xdist_group tests with their group "
            f"(first: {lost[0]}); this pytest and pytest-xdist do not work together: use "
            "the versions pyproject.toml pins (make install)"
        )
        sys.__stderr__.write(f"\nERROR: {message}\n")  # the controller shows only its own
        raise pytest.UsageError(message)


CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
LABELS = ["negative", "neutral", "positive"]
WORDS = {
    "negative": ["awful", "broken", "late", "rude", "terrible", "worst", "hate", "delayed"],
    "neutral": ["today", "flight", "check", "gate", "schedule", "ticket", "seat", "update"],
    "positive": ["great", "love", "thanks", "amazing", "happy", "best", "smooth", "friendly"],
}


def fixture_rows(n_per_label: int = 30, seed: int = 0) -> list[dict[str, str]]:
    """Distinct short texts per label, deterministic for a seed."""
    import random

    rng = random.Random(seed)
    rows = []
    for label, words in WORDS.items():
        for i in range(n_per_label):
            picked = rng.sample(words, 3)
            text = f"{label[:3]}{seed}-{i} the {picked[0]} {picked[1]} and {picked[2]} trip"
            rows.append({"text": text, "label": label, "confidence": f"{rng.uniform(0.5, 1):.3f}"})
    return rows


def build_tiny_tokenizer(
    target: Path, corpus: list[str] | None = None, vocab_size: int = 400, prefix_space=False
) -> Path:
    """A byte-level BPE tokenizer with a ChatML template, trained on `corpus` (or fixture words)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=prefix_space)
    tok.decoder = decoders.ByteLevel()
    if corpus is None:
        corpus = [r["text"] for r in fixture_rows()] + LABELS + ["Tweet: Sentiment: system user"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=alphabet
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    fast.save_pretrained(target)
    return target


def build_tiny_model(target: Path, hidden: int = 32, init: float = 0.3, **tokenizer) -> Path:
    """A random 2-layer Llama and tiny tokenizer (`build_tiny_tokenizer`'s keywords) saved as
    an HF folder. Init 0.3: at 0.02 the frozen LM head keeps logits near 0, LoRA can't move them."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    build_tiny_tokenizer(target, **tokenizer)
    tok = AutoTokenizer.from_pretrained(target)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        initializer_range=init,
    )
    LlamaForCausalLM(config).save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def as_clean(rows, source: str):
    """`rows` (text, label) as a cleaned partition's frame: the columns cleaning adds."""
    return rows.assign(
        source=source,
        source_row=range(1, len(rows) + 1),
        response=None,
        messages=None,
        confidence=None,
        text_original=rows["text"],
        dedup_key=rows["text"].str.casefold(),
    )


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def write_recipe(directory: Path, base_model: Path, sources: list[str], **overrides) -> Path:
    """A small classification recipe for the fixture corpus; overrides merge per section."""
    recipe = {
        "name": "fixture",
        "task": "classification",
        "labels": LABELS,
        "label_aliases": {"pos": "positive"},
        "data": {
            "sources": sources,
            "columns": {"text": "text", "label": "label", "confidence": "confidence"},
        },
        "cleaning": {"min_chars": 3, "max_chars": 200, "near_duplicate_threshold": 0.9},
        "quality": {"min_label_share": 0.1, "max_truncation_rate": 0.05},
        "split": {"validation": 0.15, "test": 0.15, "seed": 7},
        "prompt": {"system": "Classify.", "template": "Tweet: {text}\nSentiment:"},
        "model": {"base": str(base_model), "max_length": 64, "head": "lm"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and value and isinstance(recipe.get(key), dict):
            recipe[key] = {**recipe[key], **value}
        else:
            recipe[key] = value
    path = directory / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def build_tiny_encoder(target: Path) -> Path:
    """A randomly initialised 2-layer BERT with a WordPiece tokenizer, saved as an HF folder."""
    import torch
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    corpus = [r["text"] for r in fixture_rows()] + LABELS
    tok.train_from_iterator(
        corpus, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials)
    )
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(target)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=fast.pad_token_id,
    )
    BertModel(config).save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory):
    """A fresh SQLite tracking store and experiment; the previous URI is restored after."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    previous = tracking_utils._tracking_uri  # what set_tracking_uri last set (None: unset)
    with pytest.MonkeyPatch.context() as mp:
        # Snapshot the env vars set_tracking_uri / the experiment choice use; restored on exit.
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID"):
            if var in os.environ:
                mp.setenv(var, os.environ[var])
            else:
                mp.delenv(var, raising=False)
        mlflow.set_tracking_uri(uri)
        try:
            experiment_id = MlflowClient(uri).create_experiment(
                "ft-pipeline-serving-test", artifact_location=(root / "artifacts").as_uri()
            )
            mp.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)
            yield uri
        finally:
            mlflow.set_tracking_uri(previous)


def lora_setup(tiny_model_dir: Path, max_steps: int):
    """(model dir, tokenizer, recipe, train rows, validation rows) for loop-level tests."""
    import pandas as pd
    from transformers import AutoTokenizer

    from ft_pipeline.lib.data.rendering import encode_rows
    from ft_pipeline.recipe import parse_recipe

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    recipe = parse_recipe(
        {
            "name": "t",
            "labels": LABELS,
            "prompt": {"template": "Tweet: {text}\nSentiment:"},
            "model": {"base": str(tiny_model_dir), "max_length": 64, "head": "lm"},
            "lora": {"r": 4, "alpha": 8, "dropout": 0.1},
            "training": {
                "batch_size": 8,
                "max_steps": max_steps,
                "eval_every": 3,
                "checkpoint_every": 2,
                "learning_rate": 0.005,
                "early_stopping_patience": None,
            },
        }
    )
    rows = pd.DataFrame(fixture_rows(12)).assign(response=None, messages=None)
    enc = encode_rows(rows, recipe, tokenizer).rows
    data = list(zip(enc.input_ids, enc.labels, strict=True))
    return tiny_model_dir, tokenizer, recipe, data[:28], data[28:]


def cannot_fault(reason: str) -> None:
    """This machine cannot inject the fault (no root to mount, no setpriv): skip, except
    where `FT_REQUIRE_FAULT_TESTS=1` (set by `.ci/run`), where a fault test must never
    pass by not running."""
    if os.environ.get("FT_REQUIRE_FAULT_TESTS") == "1":
        pytest.fail(f"FT_REQUIRE_FAULT_TESTS=1 but {reason}")
    pytest.skip(reason)
