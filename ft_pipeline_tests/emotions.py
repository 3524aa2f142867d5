"""Generated multi-label emotion rows for tests (no human-labelled corpus is bundled).

Each text holds one cue word of each of its emotions among neutral filler, so a model can
learn the labels from the words: none, one or two emotions per row, deterministic per seed.
"""

from __future__ import annotations

import random

EMOTIONS = ["anger", "joy", "sadness", "fear"]
CUES = {
    "anger": ["furious", "rage", "outraged", "hate", "annoyed"],
    "joy": ["delighted", "happy", "wonderful", "love", "thrilled"],
    "sadness": ["miserable", "crying", "lonely", "heartbroken", "gloomy"],
    "fear": ["terrified", "scared", "panic", "afraid", "nervous"],
}
INIT, HIDDEN = 0.02, 64
FILLER = ["today", "the", "train", "letter", "office", "weekend", "phone", "call", "news"]


def emotion_rows(n: int, seed: int = 0) -> list[dict[str, object]]:
    """`n` rows: text, the label list, and one 0/1 column per emotion."""
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        k = rng.choices([0, 1, 2], weights=[1, 3, 2])[0]
        found = sorted(rng.sample(EMOTIONS, k), key=EMOTIONS.index)
        words = [rng.choice(CUES[e]) for e in found] + rng.sample(FILLER, 4)
        rng.shuffle(words)
        text = " ".join(words)
        if text in seen:  # distinct texts: cleaning would quarantine a repeat
            continue
        seen.add(text)
        rows.append({"text": text, "labels": found, **{e: int(e in found) for e in EMOTIONS}})
    return rows


def build_emotion_model(target):
    """A randomly initialised 2-layer Llama (hidden 64, init 0.02: the conftest model could
    not learn this task) whose tokenizer knows the emotion rows' words, one token per cue."""
    from ft_pipeline_tests.conftest import build_tiny_model

    words = [w for cues in CUES.values() for w in cues] + FILLER + EMOTIONS
    corpus = [r["text"] for r in emotion_rows(400)] + [" ".join(words)] * 20
    return build_tiny_model(
        target, hidden=HIDDEN, init=INIT, corpus=corpus, vocab_size=500, prefix_space=True
    )
