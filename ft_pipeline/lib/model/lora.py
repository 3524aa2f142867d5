"""LoRA settings: the recipe's `lora` section as a peft config, and the optimizer groups."""

from __future__ import annotations

from typing import Any

from ft_pipeline.lib.model.heads import head_for
from ft_pipeline.recipe import Recipe


def peft_config(recipe: Recipe):
    """recipe.lora -> peft.LoraConfig (the one translation)."""
    from peft import LoraConfig, TaskType

    lora = recipe.lora
    # SEQ_CLS makes peft train the classification head fully (modules_to_save).
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        use_dora=lora.use_dora,
        use_rslora=lora.use_rslora,
        task_type=TaskType[head_for(recipe).task_type],
    )


def param_groups(model, recipe: Recipe) -> list[dict[str, Any]]:
    """LoRA weights at `learning_rate`; a fully trained head (peft `modules_to_save`, the
    classifier's freshly initialised `score`) at `head_learning_rate` when the recipe sets it."""
    t = recipe.training
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    head = [p for n, p in trainable if "modules_to_save" in n]
    body = [p for n, p in trainable if "modules_to_save" not in n]
    groups = [{"params": body, "lr": t.learning_rate}]
    if head:
        groups.append({"params": head, "lr": t.head_learning_rate or t.learning_rate})
    return groups
