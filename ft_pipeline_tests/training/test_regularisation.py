"""Regularisation and adapter variants reach the optimizer, the loss and the peft config:
weight decay, label smoothing, NEFTune, DoRA, rsLoRA, and fp16 with a gradient scaler."""

from __future__ import annotations

import math

import pytest
import torch

from ft_pipeline.lib.model.heads import Head, head_for
from ft_pipeline.lib.training import checkpoints, distributed
from ft_pipeline.lib.training.keys import training_hash
from ft_pipeline.lib.training.training import _build, train_adapter
from ft_pipeline.recipe import RecipeError, parse_recipe
from ft_pipeline_tests.conftest import LABELS, lora_setup

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    return lora_setup(tiny_model_dir, max_steps=4)


def variant(recipe, *, lora=None, training=None, head=None):
    update = {}
    if lora:
        update["lora"] = recipe.lora.model_copy(update=lora)
    if training:
        update["training"] = recipe.training.model_copy(update=training)
    if head:
        update["model"] = recipe.model.model_copy(update={"head": head})
    return recipe.model_copy(update=update)


def build(setup, recipe, tmp_path, dtype=None):
    model_dir, tokenizer, _, train, val = setup
    par = distributed.join(CPU, "single")
    return _build(model_dir, train, val, recipe, tmp_path, tokenizer.pad_token_id, dtype, par)


def test_weight_decay_reaches_adamw(setup, tmp_path):
    _, loop = build(setup, variant(setup[2], training={"weight_decay": 0.05}), tmp_path)
    assert [g["weight_decay"] for g in loop.optimizer.param_groups] == [0.05]
    _, plain = build(setup, setup[2], tmp_path / "plain")
    assert [g["weight_decay"] for g in plain.optimizer.param_groups] == [0.0]


def lora_scalings(model) -> set[float]:
    return {
        m.scaling["default"]
        for m in model.modules()
        if isinstance(getattr(m, "scaling", None), dict)
    }


def test_dora_and_rslora_reach_peft(setup, tmp_path):
    recipe = setup[2]  # r 4, alpha 8
    plain, _ = build(setup, recipe, tmp_path / "plain")
    assert lora_scalings(plain) == {2.0}  # alpha / r
    rs, _ = build(setup, variant(recipe, lora={"use_rslora": True}), tmp_path / "rs")
    assert lora_scalings(rs) == {4.0}  # alpha / sqrt(r)
    dora, _ = build(setup, variant(recipe, lora={"use_dora": True}), tmp_path / "dora")
    names = [n for n, p in dora.named_parameters() if p.requires_grad]
    assert any("lora_magnitude_vector" in n for n in names)
    assert not any("lora_magnitude_vector" in n for n, _ in plain.named_parameters())


def test_label_smoothing_is_in_the_training_loss_only(tiny_model_dir):
    head = Head("classifier", tuple(LABELS), label_smoothing=0.2)
    model = head.load(tiny_model_dir, CPU, 0)
    batch = head.collate([([5, 6, 7, 8], 0), ([9, 10, 11], 2)], 0)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    plain, _ = head.loss(model, batch)
    trained, _ = head.loss(model, batch, train=True)
    f = torch.nn.functional.cross_entropy
    assert torch.isclose(plain, f(logits.float(), batch.labels))
    assert torch.isclose(trained, f(logits.float(), batch.labels, label_smoothing=0.2))
    assert not torch.isclose(trained, plain)


def test_neftune_noises_the_embeddings_while_training_only(setup, tmp_path):
    model, _ = build(setup, variant(setup[2], training={"neftune_alpha": 5.0}), tmp_path)
    embeddings = model.get_input_embeddings()
    ids = torch.tensor([[5, 6, 7, 8]])
    model.train()
    assert not torch.equal(embeddings(ids), embeddings(ids))
    model.eval()
    assert torch.equal(embeddings(ids), embeddings(ids))
    plain, _ = build(setup, setup[2], tmp_path / "plain")
    plain.train()
    assert torch.equal(plain.get_input_embeddings()(ids), plain.get_input_embeddings()(ids))


def test_fp16_trains_with_a_gradient_scaler_whose_state_is_checkpointed(setup, tmp_path):
    model_dir, tokenizer, recipe, train, val = setup
    fp16 = variant(recipe, training={"precision": "fp16"})
    assert build(setup, fp16, tmp_path / "fp16", torch.float16)[1].scaler.is_enabled()
    assert not build(setup, fp16, tmp_path / "bf16", torch.bfloat16)[1].scaler.is_enabled()
    result = train_adapter(
        model_dir,
        train,
        val,
        fp16,
        tmp_path,
        pad_id=tokenizer.pad_token_id,
        device=CPU,
        dtype=torch.float16,
    )
    assert result.steps == 4 and math.isfinite(result.best_val_loss)
    _, state, _ = checkpoints.load_latest(tmp_path / "checkpoints", lambda *a: None, print)
    assert state["scaler"]["scale"] > 0  # the scaler ran, and a resume restores it


@pytest.mark.parametrize(
    ("section", "value"),
    [
        ("training", {"weight_decay": 0.01}),
        ("training", {"label_smoothing": 0.1}),
        ("training", {"neftune_alpha": 5.0}),
        ("lora", {"use_dora": True}),
        ("lora", {"use_rslora": True}),
    ],
)
def test_each_knob_is_in_the_adapter_key(setup, section, value):
    recipe = setup[2]
    head = "classifier" if "label_smoothing" in value else None
    other = variant(recipe, head=head, **{section: value})
    base = variant(recipe, head=head)
    assert training_hash(other) != training_hash(base)


def test_head_knobs_on_the_wrong_head_are_refused():
    base = {"name": "r", "task": "classification", "labels": LABELS, "model": {"base": "x"}}
    with pytest.raises(RecipeError, match="label_smoothing applies to the classifier head"):
        parse_recipe(
            {**base, "model": {"base": "x", "head": "lm"}, "training": {"label_smoothing": 0.1}}
        )
    with pytest.raises(RecipeError, match="neftune_alpha applies to the lm head"):
        parse_recipe({**base, "training": {"neftune_alpha": 5.0}})  # classifier by default
    assert (
        head_for(parse_recipe({**base, "training": {"label_smoothing": 0.1}})).label_smoothing
        == 0.1
    )
