"""clean_frame for instruction (prompt/response) and chat (messages) tasks."""

import json

import pytest

from ft_pipeline.lib.data.readers import ROW_COLUMN
from ft_pipeline.recipe import parse_recipe
from ft_pipeline_tests.data.test_cleaning import check_accounting, clean

# --- instruction task -------------------------------------------------------------------

INSTRUCTION = parse_recipe(
    {"name": "i", "task": "instruction", "prompt": {"template": "Q: {prompt}"}}
)


def test_instruction_rows():
    records = [
        {"prompt": "What is 2+2? see http://x.co", "response": "4, see http://x.co"},
        {"prompt": "what is 2+2?  see http://y.co", "response": "4, see http://x.co"},
        {"prompt": "   ", "response": "x"},
        {"prompt": "Name a colour", "response": None},
        {"prompt": "Name a fruit", "response": "apple"},
    ]
    result = clean(records, INSTRUCTION)
    check_accounting(records, result)
    kept = result.kept
    assert kept[ROW_COLUMN].tolist() == [1, 5]
    # URLs are replaced in the prompt but the answer is only repaired, never rewritten.
    assert kept["text"].tolist() == ["What is 2+2? see <url>", "Name a fruit"]
    assert kept["response"].tolist() == ["4, see http://x.co", "apple"]
    assert kept["label"].isna().all()
    q = result.quarantined
    assert q[ROW_COLUMN].tolist() == [2, 3, 4]
    assert q["reason_code"].tolist() == ["duplicate", "empty_prompt", "empty_response"]
    assert q["reason"].tolist() == ["duplicate of row 1", "prompt is empty", "response is empty"]
    assert q["duplicate_of"].tolist()[0] == 1
    assert q["text_original"].tolist()[1:] == ["   ", "Name a colour"]


def test_instruction_same_prompt_different_answers_are_kept():
    records = [
        {"prompt": "Tell me a fact", "response": "The sun is a star."},
        {"prompt": "Tell me a fact", "response": "Octopuses have three hearts."},
    ]
    result = clean(records, INSTRUCTION)
    assert result.kept[ROW_COLUMN].tolist() == [1, 2]


def test_instruction_prompt_response_boundary_matters_for_dedup():
    records = [
        {"prompt": "Continue the count: one two", "response": "three"},
        {"prompt": "Continue the count: one", "response": "two three"},
    ]
    result = clean(records, INSTRUCTION)
    assert result.quarantined.empty
    assert result.kept[ROW_COLUMN].tolist() == [1, 2]


# --- chat task ------------------------------------------------------------------------------

CHAT = parse_recipe({"name": "c", "task": "chat"})


def conversation(*turns):
    return json.dumps([{"role": role, "content": content} for role, content in turns])


GOOD_CHAT = conversation(
    ("system", "be nice"), ("user", "hi  there"), ("assistant", "hello! cafÃ©")
)


def test_chat_row_is_flattened():
    result = clean([{"messages": GOOD_CHAT}], CHAT)
    assert result.quarantined.empty
    kept = result.kept.iloc[0]
    assert kept["text"] == "system: be nice\nuser: hi there"
    assert kept["response"] == "hello! café"
    assert json.loads(kept["messages"]) == [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello! café"},
    ]
    assert kept["text_original"] == GOOD_CHAT


@pytest.mark.parametrize(
    ("messages", "code", "reason"),
    [
        pytest.param('[{"role": "user"', "invalid_messages", "not JSON", id="bad-json"),
        pytest.param(
            conversation(("user", "hi"), ("assistant", "hello"), ("user", "bye")),
            "invalid_messages",
            "last message must be the assistant's answer",
            id="ends-with-user",
        ),
        pytest.param("[]", "invalid_messages", "non-empty list", id="empty-list"),
        pytest.param('{"role": "user"}', "invalid_messages", "non-empty list", id="not-a-list"),
        pytest.param(None, "invalid_messages", "non-empty list", id="missing"),
        pytest.param(
            conversation(("bot", "hi"), ("assistant", "hello")),
            "invalid_messages",
            "message 0: needs role",
            id="bad-role",
        ),
        pytest.param(
            conversation(("system", "s"), ("assistant", "hello")),
            "invalid_messages",
            "no user message",
            id="no-user",
        ),
        pytest.param(
            conversation(("user", "  "), ("assistant", "hello")),
            "empty_content",
            "content is empty",
            id="empty-content",
        ),
    ],
)
def test_bad_chat_rows_are_quarantined(messages, code, reason):
    records = [{"messages": GOOD_CHAT}, {"messages": messages}]
    result = clean(records, CHAT)
    check_accounting(records, result)
    assert result.kept[ROW_COLUMN].tolist() == [1]
    q = result.quarantined.iloc[0]
    assert (q[ROW_COLUMN], q["reason_code"]) == (2, code)
    assert reason in q["reason"]


def test_chat_duplicate():
    records = [{"messages": GOOD_CHAT}, {"messages": GOOD_CHAT}]
    result = clean(records, CHAT)
    q = result.quarantined.iloc[0]
    assert (q[ROW_COLUMN], q["reason_code"], q["duplicate_of"]) == (2, "duplicate", 1)


def test_quarantined_chat_row_keeps_its_raw_messages():
    bad = conversation(("user", "hi"), ("assistant", "hello"), ("user", "bye"))
    result = clean([{"messages": bad}], CHAT)
    assert result.quarantined["text_original"].tolist() == [bad]
