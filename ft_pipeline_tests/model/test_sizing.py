"""Sizing a starter recipe: max_length, the truncation gate and the training sizes."""

from __future__ import annotations

import numpy as np
import pytest

from ft_pipeline.lib.model.sizing import (
    MINILM,
    SMOLLM,
    Lengths,
    choose_base,
    choose_max_length,
    choose_training,
    truncation_limit,
)


def lengths(values) -> Lengths:
    return Lengths(np.array(values), None)


@pytest.mark.parametrize(
    ("tokens", "limit", "device", "expected"),
    [
        pytest.param([20] * 99 + [40], 512, "cpu", 64, id="short-rows-fit"),
        pytest.param([300] * 100, 512, "cpu", 256, id="cpu-cap"),
        pytest.param([300] * 100, 512, "cuda", 384, id="cuda-fits"),
        pytest.param([3000] * 100, 512, "cuda", 512, id="model-limit"),
        pytest.param([3000] * 100, 8192, "cuda", 2048, id="cuda-cap"),
    ],
)
def test_max_length_holds_the_p99_row_within_the_caps(tokens, limit, device, expected):
    choice = choose_max_length(lengths(tokens), limit, device)
    assert choice.value == expected
    assert f"{int(np.percentile(tokens, 99)):,} tokens" in choice.why


def test_truncation_gate_sits_above_the_measured_share():
    measured = lengths([100] * 70 + [900] * 30)
    choice = truncation_limit(measured, 256)
    assert 0.30 < choice.value <= 0.40
    assert "30.0% of 100 rows" in choice.why
    assert truncation_limit(lengths([100] * 50), 256).value == 0.02


def test_training_keeps_small_data_whole_and_samples_large_data():
    small = choose_training(MINILM, "classifier", 320, 250, 256, cuda=False)
    assert small.max_train_rows is None and small.epochs == 3 and small.minutes < 5
    large = choose_training(SMOLLM, "lm", 200_000, 400, 512, cuda=False)
    assert large.max_train_rows is not None and 200 <= large.max_train_rows < 200_000
    assert large.epochs == 1 and large.batch_size * large.gradient_accumulation == 16
    assert choose_training(SMOLLM, "lm", 200_000, 400, 512, cuda=True).max_train_rows is None


def test_base_and_head_follow_the_task():
    assert [c.value for c in choose_base("classification", False, True)] == [MINILM, "classifier"]
    assert [c.value for c in choose_base("instruction", False, False)] == [SMOLLM, "lm"]
    assert choose_base("classification", True, True)[0].value == SMOLLM
