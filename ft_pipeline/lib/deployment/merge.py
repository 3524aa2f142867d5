"""Merge an adapter into its base weights and write a self-contained model folder.

The merged model is checked against the adapter model on a sample of real prompts before
anything is written: a merge that changes predictions is an error, not a deployment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ft_pipeline.lib.model.heads import Head, classifier_logits
from ft_pipeline.lib.model.modeling import collate, last_token_logprobs
from ft_pipeline.lib.state.atomic import crash_point, staged_dir
from ft_pipeline.recipe import Recipe

CONFIG_FILE = "ft_pipeline.json"
CARD_FILE = "README.md"
HEAD_TEXT = {
    "lm": "the causal LM answers after the chat prompt; labels are scored by the log-"
    "probabilities of their tokens",
    "classifier": "a sequence-classification head on the pre-trained body (LoRA on the "
    "body, head trained fully); labels are the softmax over its logits",
    "multilabel": "a sequence-classification head on the pre-trained body (LoRA on the "
    "body, head trained fully) with one sigmoid per label; a label is predicted when its "
    "probability reaches its threshold, tuned on the validation split",
}


class MergeMismatch(RuntimeError):
    """The merged model's outputs differ from the adapter model's."""


def _outputs(head: Head, model: Any, batch) -> torch.Tensor:
    if head.multilabel:
        return torch.nn.functional.logsigmoid(classifier_logits(model, batch))
    if head.name == "classifier":
        return torch.log_softmax(classifier_logits(model, batch), dim=-1)
    return last_token_logprobs(model, batch)


@torch.inference_mode()
def merge_and_verify(
    head: Head,
    base_dir: str | Path,
    adapter_dir: Path,
    inputs: Sequence[Sequence[int]],
    pad_id: int,
    atol: float = 1e-4,
) -> tuple[Any, float]:
    """Merged float32 model and the largest |log-prob| difference seen on the inputs.

    For the classifier head the trained head (peft `modules_to_save`) comes along."""
    from peft import PeftModel

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    adapted = PeftModel.from_pretrained(head.load(base_dir, cpu, pad_id), str(adapter_dir)).eval()
    batch = collate(list(inputs), pad_id)
    before = _outputs(head, adapted, batch)
    merged = adapted.merge_and_unload().eval()
    after = _outputs(head, merged, batch)
    diff = float((before - after).abs().max())
    if not torch.allclose(before, after, atol=atol):
        raise MergeMismatch(f"merged model differs from the adapter model by {diff:.2e} > {atol}")
    return merged, diff


def model_card(recipe: Recipe, result: dict[str, Any], info: dict[str, Any]) -> str:
    """A short Markdown card: what the model is, what it was trained on, how it scored."""
    rows = "\n".join(
        f"| {name} | {m.get('macro_f1', m.get('token_f1', float('nan'))):.4f} | "
        f"{m.get('accuracy', m.get('exact_match', float('nan'))):.4f} |"
        for name, m in result["models"].items()
    )
    labelled = recipe.task in ("classification", "multilabel")
    metric = "macro-F1" if labelled else "token F1"
    second = {"classification": "accuracy", "multilabel": "subset accuracy"}
    second = second.get(recipe.task, "exact match")
    multi = recipe.task == "multilabel"
    output = "`labels` (a JSON list of the labels over their threshold)" if multi else "`label`"
    return f"""# {recipe.model_name}

Fine-tuned from `{recipe.model.base}` with LoRA (r={recipe.lora.r}, alpha={recipe.lora.alpha})
by ft_pipeline, recipe `{recipe.name}` (hash `{recipe.content_hash()}`), task `{recipe.task}`,
head `{recipe.model.head}`: {HEAD_TEXT["multilabel" if multi else recipe.model.head]}.

- labels: {", ".join(recipe.labels) or "n/a"}
- data version: `{info["data_version"]}`; adapter key `{info["key"]}`
- trained on {info["train_rows"]} rows, {info["steps"]} steps; best validation loss
  {info["best_val_loss"]:.4f} (from {info["initial_val_loss"]:.4f})
- evaluated on {result["test_rows"]} held-out test rows
- created {datetime.now(UTC).isoformat(timespec="seconds")}

| model | {metric} | {second} |
|---|---|---|
{rows}

Input: a table with a `text` column. Output: {output} and one `score_<label>` column per label.
"""


def write_model_folder(
    merged: Any,
    tokenizer: Any,
    recipe: Recipe,
    card: str,
    target: Path,
    extra: dict[str, Any],
) -> Path:
    """Save weights, tokenizer, recipe and card into `target` (atomic folder swap).

    Everything is written and flushed in a temporary folder beside `target`, which is then
    renamed into place: a crash leaves either the previous folder or the new one, and a full
    or read-only disk raises `StateWriteError` with the previous folder untouched."""
    config = {
        "recipe": recipe.model_dump(mode="json"),
        "labels": recipe.labels,
        "head": recipe.model.head,
        **extra,
    }
    with staged_dir(target, label="deploy.folder") as tmp:
        merged.save_pretrained(str(tmp))
        crash_point("deploy.folder.staging")
        tokenizer.save_pretrained(str(tmp))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        (tmp / CARD_FILE).write_text(card)
    return target
