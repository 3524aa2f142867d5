"""Shared-prefix KV caching in label scoring: same probabilities as the uncached path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ft_pipeline.lib.model import prefix_cache as pc
from ft_pipeline.lib.model.scoring import LabelTokens, label_tokens, score_labels
from ft_pipeline_tests.conftest import LABELS

CPU = torch.device("cpu")
SYSTEM = "Classify the sentiment of the tweet. Answer negative, neutral or positive."
TEXTS = [
    "great flight",
    "the awful late broken seat today and the rude gate",
    "ok",
    "love thanks amazing happy best smooth friendly trip",
    "hate",
    "gate schedule",
    "worst delayed ticket",
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return model.eval(), tokenizer


def chat_prompts(tokenizer, texts=TEXTS) -> list[list[int]]:
    """Chat-templated prompts: system prompt and user header shared, tweet lengths differ."""
    out = []
    for text in texts:
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Tweet: {text}\nSentiment:"},
        ]
        rendered = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        out.append(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return out


class Spy:
    """Counts suffix passes through the prefix cache and records the prefix lengths used."""

    def __init__(self, monkeypatch):
        self.lengths: list[int] = []
        original = pc.PrefixCache.hidden_states

        def hidden_states(cache, model, batch):
            self.lengths.append(cache.length)
            return original(cache, model, batch)

        monkeypatch.setattr(pc.PrefixCache, "hidden_states", hidden_states)


def both(model, prompts, tokens, pad_id, **kwargs):
    cached = score_labels(model, prompts, tokens, pad_id, CPU, **kwargs)
    plain = score_labels(model, prompts, tokens, pad_id, CPU, prefix_cache=False, **kwargs)
    return cached, plain


def test_common_prefix_length():
    assert pc.common_prefix_length([]) == 0
    assert pc.common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == 2
    # at least one token stays outside the prefix, even for identical prompts
    assert pc.common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert pc.common_prefix_length([[1, 2, 3, 4]]) == 3
    assert pc.common_prefix_length([[7, 2], [1, 2]]) == 0


def test_chat_prompts_share_a_long_prefix(tiny):
    _, tokenizer = tiny
    prompts = chat_prompts(tokenizer)
    n = pc.common_prefix_length(prompts)
    assert n >= pc.MIN_PREFIX_TOKENS
    assert len({len(p) for p in prompts}) > 3  # suffixes of different lengths: padding
    assert all(p[:n] == prompts[0][:n] for p in prompts)
    assert len({p[n] for p in prompts}) > 1 or min(len(p) for p in prompts) == n + 1


@pytest.mark.parametrize("batch_size", [1, 3, 4, 32])
def test_cached_probabilities_equal_uncached(tiny, monkeypatch, batch_size):
    model, tokenizer = tiny
    prompts = chat_prompts(tokenizer)
    tokens = label_tokens(tokenizer, LABELS)
    assert tokens.single_pass
    spy = Spy(monkeypatch)
    cached, plain = both(model, prompts, tokens, tokenizer.pad_token_id, batch_size=batch_size)
    n_batches = -(-len(prompts) // batch_size)
    assert spy.lengths == [pc.common_prefix_length(prompts)] * n_batches
    assert cached.shape == (len(prompts), len(LABELS))
    np.testing.assert_allclose(cached, plain, rtol=0, atol=1e-5)
    np.testing.assert_allclose(cached.sum(axis=1), 1.0, atol=1e-6)
    assert np.ptp(plain, axis=0).max() > 1e-3  # rows differ: a mix-up would show


def test_single_row(tiny, monkeypatch):
    model, tokenizer = tiny
    prompt = chat_prompts(tokenizer)[1]
    tokens = label_tokens(tokenizer, LABELS)
    pad = tokenizer.pad_token_id
    spy = Spy(monkeypatch)
    cached, plain = both(model, [prompt], tokens, pad)
    assert spy.lengths == []  # one row saves nothing: the plain path
    np.testing.assert_array_equal(cached, plain)
    monkeypatch.setattr(pc, "MIN_ROWS", 1)  # force the cache: prefix = all but the last token
    cached, _ = both(model, [prompt], tokens, pad)
    assert spy.lengths == [len(prompt) - 1]
    np.testing.assert_allclose(cached, plain, rtol=0, atol=1e-5)


def test_no_common_prefix_falls_back(tiny, monkeypatch):
    model, tokenizer = tiny
    prompts = chat_prompts(tokenizer)
    prompts[2] = [tokenizer.eos_token_id, *prompts[2][1:]]  # another first token: no prefix
    assert pc.common_prefix_length(prompts) == 0
    assert pc.plan_prefix(model, prompts, CPU) is None
    spy = Spy(monkeypatch)
    cached, plain = both(model, prompts, label_tokens(tokenizer, LABELS), tokenizer.pad_token_id)
    assert spy.lengths == []
    np.testing.assert_array_equal(cached, plain)


def test_short_prefix_falls_back(tiny):
    model, tokenizer = tiny
    prompts = chat_prompts(tokenizer)
    n = pc.common_prefix_length(prompts)
    prompts = [p[:5] + p[n:] for p in prompts]  # only 5 tokens shared
    assert pc.common_prefix_length(prompts) == 5 < pc.MIN_PREFIX_TOKENS
    assert pc.plan_prefix(model, prompts, CPU) is None


def test_multi_token_labels(tiny, monkeypatch):
    """Labels sharing their first token go through `_sequence_scores`, also cached."""
    model, tokenizer = tiny
    prompts = chat_prompts(tokenizer)
    tokens = LabelTokens(["a", "b", "c"], [[11, 12], [11, 13, 14], [15]])
    assert not tokens.single_pass
    spy = Spy(monkeypatch)
    cached, plain = both(model, prompts, tokens, tokenizer.pad_token_id, batch_size=3)
    assert len(spy.lengths) == 3
    np.testing.assert_allclose(cached, plain, rtol=0, atol=1e-5)


def test_bf16_autocast_predictions_agree(tiny, monkeypatch):
    model, tokenizer = tiny
    prompts = chat_prompts(tokenizer)
    tokens = label_tokens(tokenizer, LABELS)
    spy = Spy(monkeypatch)
    cached, plain = both(
        model, prompts, tokens, tokenizer.pad_token_id, dtype=torch.bfloat16, batch_size=4
    )
    assert len(spy.lengths) == 2
    fp32 = score_labels(model, prompts, tokens, tokenizer.pad_token_id, CPU, prefix_cache=False)
    assert not np.array_equal(plain, fp32)  # autocast was on
    np.testing.assert_array_equal(cached.argmax(axis=1), plain.argmax(axis=1))
    np.testing.assert_allclose(cached, plain, rtol=0, atol=5e-2)


def test_peft_lora_model(tiny, monkeypatch):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny
    torch.manual_seed(0)
    config = LoraConfig(
        r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM", init_lora_weights=False
    )
    peft_model = get_peft_model(model, config)
    try:
        prompts = chat_prompts(tokenizer)
        tokens = label_tokens(tokenizer, LABELS)
        pad = tokenizer.pad_token_id
        spy = Spy(monkeypatch)
        cached, plain = both(peft_model, prompts, tokens, pad, batch_size=3)
        assert len(spy.lengths) == 3
        np.testing.assert_allclose(cached, plain, rtol=0, atol=1e-5)
        with peft_model.disable_adapter():
            base = score_labels(peft_model, prompts, tokens, pad, CPU, prefix_cache=False)
        assert np.abs(base - plain).max() > 1e-4  # the adapter did change the scores
    finally:
        peft_model.unload()


def test_unsupported_models(tiny_encoder_dir, tiny_model_dir):
    from transformers import AutoConfig, AutoModel, LlamaForSequenceClassification

    encoder = AutoModel.from_pretrained(tiny_encoder_dir)
    assert pc.cache_kwarg(encoder) is None
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.num_labels = 3
    classifier = LlamaForSequenceClassification(config)  # no LM head to score labels with
    assert pc.cache_kwarg(classifier) is None
    assert pc.PrefixCache.build(classifier, list(range(1, 12)), CPU) is None


def test_cache_kwarg_of_a_decoder(tiny):
    model, _ = tiny
    assert pc.cache_kwarg(model) in {"cache", "past_key_values"}
