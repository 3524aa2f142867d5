"""The classifier head under task multilabel: a sigmoid per label, BCE on multi-hot targets."""

from __future__ import annotations

import torch

from ft_pipeline.lib.model.heads import classifier_probs, head_for, load_classifier
from ft_pipeline.lib.model.lora import peft_config
from ft_pipeline.recipe import parse_recipe

LABELS = ["anger", "joy", "sadness"]


def _recipe(base, **training):
    return parse_recipe(
        {
            "name": "emo",
            "task": "multilabel",
            "labels": LABELS,
            "model": {"base": str(base), "max_length": 32},
            "training": training,
        }
    )


def test_multilabel_head_loss_is_bce_with_logits_on_multi_hot_targets(tiny_model_dir):
    head = head_for(_recipe(tiny_model_dir))
    assert head.multilabel and head.task_type == "SEQ_CLS"
    torch.manual_seed(0)
    model = head.load(tiny_model_dir, torch.device("cpu"), pad_id=0)
    assert model.config.problem_type == "multi_label_classification"
    assert model.config.num_labels == 3
    rows = [([5, 6, 7], [1.0, 0.0, 1.0]), ([8, 9], [0.0, 0.0, 0.0])]
    batch = head.collate(rows, pad_id=0)
    assert batch.labels.dtype == torch.float32 and batch.labels.shape == (2, 3)
    loss, n = head.loss(model, batch)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch.labels)
    assert n == 2 and torch.allclose(loss, expected)
    probs = classifier_probs(model, [r[0] for r in rows], 0, torch.device("cpu"), sigmoid=True)
    assert probs.shape == (2, 3)
    assert abs(probs.sum(axis=1) - 1).max() > 1e-3  # independent sigmoids, not a softmax
    sigmoid = torch.sigmoid(logits).detach().numpy()
    assert abs(probs - sigmoid).max() < 1e-5


def test_label_smoothing_pulls_targets_towards_one_half(tiny_model_dir):
    smooth = head_for(_recipe(tiny_model_dir, label_smoothing=0.2))
    torch.manual_seed(0)
    model = smooth.load(tiny_model_dir, torch.device("cpu"), pad_id=0)
    batch = smooth.collate([([5, 6], [1.0, 0.0, 0.0])], pad_id=0)
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    target = torch.tensor([[0.9, 0.1, 0.1]])
    want = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(smooth.loss(model, batch, train=True)[0], want)
    assert not torch.allclose(smooth.loss(model, batch)[0], want)  # validation: plain


def test_lora_trains_the_head_fully(tiny_model_dir):
    from peft import get_peft_model

    recipe = _recipe(tiny_model_dir)
    base = load_classifier(tiny_model_dir, LABELS, torch.device("cpu"), 0, multilabel=True)
    model = get_peft_model(base, peft_config(recipe))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("modules_to_save" in n and "score" in n for n in trainable)
