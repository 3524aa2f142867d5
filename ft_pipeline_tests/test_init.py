"""`ft-pipeline init PATH`: a starter recipe from a data file that runs with no hand edits.

Generated data only: long articles in five topics (one label also spelled 'Tech'), question
and answer pairs, chat conversations, and files init must refuse with a clear message.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import yaml

from ft_pipeline import cli, init_recipe
from ft_pipeline.recipe import load_recipe

TOPICS = {
    "sport": "match goal league coach striker season stadium referee tournament keeper",
    "tech": "software chip startup cloud algorithm processor smartphone network robot",
    "business": "market shares profit investor merger revenue quarterly bank dividend",
    "politics": "election parliament minister vote campaign policy senate coalition",
    "health": "hospital patients vaccine doctor clinical therapy nutrition nurse",
}
COMMON = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "that",
    "it",
    "was",
    "for",
    "on",
    "with",
    "as",
    "by",
    "at",
    "from",
    "said",
    "year",
    "café",
    "déjà",
]


def article(rng: random.Random, topic: str, chars: int) -> str:
    words, out = TOPICS[topic].split(), []
    while sum(map(len, out)) + len(out) < chars:
        sentence = [rng.choice(words if rng.random() < 0.3 else COMMON) for _ in range(12)]
        out.append(" ".join(sentence).capitalize() + rng.choice([".", "!", ", she said."]))
    return " ".join(out)[:chars].rstrip()


def write_articles(path: Path, rows: int, encoding: str, delimiter: str) -> list[list[str]]:
    rng = random.Random(7)
    topics = list(TOPICS)
    data = []
    for i in range(rows):
        topic = topics[i % len(topics)]
        chars = 25_000 if i == 3 else 500 if i == 4 else rng.randint(500, 8000)
        label = "Tech" if i % 40 == 1 else topic  # 5 of the 40 tech rows
        data.append([label, article(rng, topic, chars)])
    with path.open("w", newline="", encoding=encoding) as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerows([["category", "article"], *data])
    return data


@pytest.fixture(autouse=True)
def _no_cuda(monkeypatch):
    """The choices depend on the machine: these tests pin a CPU one."""
    monkeypatch.setattr(init_recipe, "cuda_available", lambda: False)
    for var in ("FT_HOME", "FT_RECIPE", "DAGSTER_HOME"):
        monkeypatch.setenv(var, "unused")


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    """One state folder for the tokenizer conversions of every test here."""
    return tmp_path_factory.mktemp("init-home")


def init(home: Path, path: Path, *more: str) -> int:
    return cli.main(["--home", str(home), "init", str(path), *more])


@pytest.mark.parametrize(
    ("encoding", "delimiter", "expected_encoding"),
    [
        pytest.param("utf-8-sig", ",", "utf-8", id="utf8-bom-comma"),
        pytest.param("latin-1", ";", "latin-1", id="latin1-semicolon"),
    ],
)
def test_long_articles_become_a_recipe_whose_data_half_passes(
    tmp_path, home, capsys, encoding, delimiter, expected_encoding
):
    data = tmp_path / "data" / "news.csv"
    data.parent.mkdir()
    rows = write_articles(data, 200, encoding, delimiter)
    recipe_path = tmp_path / "recipes" / "news.yaml"
    assert init(home, data, "--out", str(recipe_path)) == 0
    out = capsys.readouterr().out
    assert "task: classification (inferred from the columns)" in out
    assert "folded 'Tech' into 'tech'" in out
    assert f"ft-pipeline --home {home} --recipe {recipe_path} run" in out

    recipe = load_recipe(recipe_path)
    assert recipe.task == "classification"
    assert sorted(recipe.labels) == sorted(TOPICS)
    assert recipe.label_aliases == {"Tech": "tech"}
    assert (recipe.data.columns.text, recipe.data.columns.label) == ("article", "category")
    assert recipe.data.encoding == expected_encoding
    [source] = recipe.data.sources
    assert source.path == "../data/news.csv" and recipe.data.source_root == "../data"
    assert source.delimiter == (None if delimiter == "," else delimiter)
    assert recipe.cleaning.max_chars >= max(len(text) for _, text in rows)
    assert recipe.model.base == "bundled:all-minilm-l6-v2" and recipe.model.head == "classifier"
    assert recipe.model.max_length <= 512
    assert recipe.quality.max_truncation_rate > 0.5  # most articles are longer than that
    text = recipe_path.read_text()
    assert "# longest text 25,000 chars" in text
    assert "Tech: tech  # 5 rows; differs from 'tech' by case or spacing" in text

    run = ["--home", str(tmp_path / "h"), "--recipe", str(recipe_path), "run"]
    assert cli.main([*run, "--until", "tokenized_dataset"]) == 0, capsys.readouterr().out
    manifest = tmp_path / "h" / "data" / "tokenized" / "news" / "manifest.json"
    stats = json.loads(manifest.read_text())
    assert stats["rows_out"] >= 195  # near duplicates aside, every article is kept
    assert stats["truncation_rate"] <= recipe.quality.max_truncation_rate


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_question_answer_pairs_become_an_instruction_recipe(tmp_path, home, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    pairs = [
        {
            "id": i,
            "question": f"What is {i} plus {i + 3}?",
            "answer": f"{i} plus {i + 3} is {2 * i + 3}.",
        }
        for i in range(120)
    ]
    data = write_jsonl(tmp_path / "qa.jsonl", pairs)
    assert init(home, data) == 0, capsys.readouterr().err
    recipe = load_recipe(tmp_path / "recipes" / "qa.yaml")  # the default --out
    assert recipe.task == "instruction"
    assert (recipe.data.columns.prompt, recipe.data.columns.response) == ("question", "answer")
    assert recipe.model.base == "bundled:smollm2-135m-instruct" and recipe.model.head == "lm"
    assert recipe.prompt.template == "{prompt}"
    assert 16 <= recipe.evaluation.max_new_tokens <= 64
    assert "not used (kept in raw_data only): ['id']" in capsys.readouterr().out


def test_chat_conversations_become_a_chat_recipe(tmp_path, home, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    talks = [
        {
            "messages": [
                {"role": "user", "content": f"Hello, I need help with order {i}."},
                {"role": "assistant", "content": f"Of course: order {i} ships tomorrow."},
            ]
        }
        for i in range(60)
    ]
    data = write_jsonl(tmp_path / "support.txt", talks)  # JSON lines, by their content
    assert init(home, data, "--name", "support-chat") == 0, capsys.readouterr().err
    recipe = load_recipe(tmp_path / "recipes" / "support-chat.yaml")
    assert recipe.name == "support-chat" and recipe.task == "chat"
    assert recipe.data.columns.messages == "messages" and recipe.model.head == "lm"
    assert recipe.data.sources[0].path == "../support.txt"
    assert recipe.data.sources[0].format == "jsonl"


UNIQUE_LABELS = "text,label\n" + "".join(f"sample text {i},label {i}\n" for i in range(40))


@pytest.mark.parametrize(
    ("content", "more", "message"),
    [
        pytest.param(None, (), "file does not exist", id="missing"),
        pytest.param(b"", (), "the file is empty", id="empty"),
        pytest.param(b"text\nhello\nworld\n", (), "the file has one column", id="one-column"),
        pytest.param(
            UNIQUE_LABELS.encode(),
            ("--task", "classification"),
            "no usable label column",
            id="every-label-unique",
        ),
    ],
)
def test_unusable_files_say_what_to_pass(tmp_path, home, capsys, content, more, message):
    data = tmp_path / "data.csv"
    if content is not None:
        data.write_bytes(content)
    assert init(home, data, "--out", str(tmp_path / "r.yaml"), *more) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {data}: ") and message in err
    assert not (tmp_path / "r.yaml").exists()
    if content == UNIQUE_LABELS.encode():
        assert "--task instruction" in err and "'label' (40 distinct" in err


def test_an_existing_recipe_is_kept_unless_forced(tmp_path, home, capsys):
    data = write_jsonl(
        tmp_path / "qa.jsonl", [{"question": f"q {i}?", "answer": f"a {i}"} for i in range(30)]
    )
    target = tmp_path / "r.yaml"
    target.write_text("mine\n")
    assert init(home, data, "--out", str(target)) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert target.read_text() == "mine\n"
    assert init(home, data, "--out", str(target), "--force") == 0
    assert yaml.safe_load(target.read_text())["task"] == "instruction"


def test_a_state_folder_holding_other_sources_gets_one_of_its_own(tmp_path, home, capsys):
    data = write_jsonl(
        tmp_path / "qa.jsonl", [{"question": f"q {i}?", "answer": f"a {i}"} for i in range(30)]
    )
    shared = tmp_path / "state"
    raw = shared / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "bundled_crowdflower-tweets.source.json").write_text(
        '{"key": "bundled:crowdflower-tweets"}'
    )
    (shared / "models").symlink_to(home / "models", target_is_directory=True)
    assert (
        cli.main(["--home", str(shared), "init", str(data), "--out", str(tmp_path / "qa.yaml")])
        == 0
    )
    out = capsys.readouterr().out
    assert "already holds other sources (bundled:crowdflower-tweets)" in out
    assert f"ft-pipeline --home {tmp_path / 'state-qa'} --recipe {tmp_path / 'qa.yaml'} run" in out
