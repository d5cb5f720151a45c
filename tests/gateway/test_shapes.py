"""The API shape adapters, pure: validation, worst-case bounds, usage into the same
buckets, and stream events (relayed, dropped, held back)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.core.responses import read_response
from metering.errors import InvalidInput, UsageError
from metering.gateway.shapes import SHAPES, ParsedRequest, Verdict
from metering.gateway.shapes.prompts import body_bytes, texts_of


def data(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(obj) + b"\n\n"


def request(kind: str, body: dict[str, Any]) -> ParsedRequest:
    return SHAPES[kind].parse(orjson.dumps(body))


CHAT = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}
USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


@pytest.mark.parametrize(
    "choices", [[], None, [{"index": 0, "delta": {}}], [{"index": 0, "delta": {"content": ""}}]]
)
def test_a_usage_chunk_the_client_did_not_ask_for_is_dropped(choices: Any) -> None:
    chunk: dict[str, Any] = {"id": "c1", "usage": USAGE}
    if choices is not None:
        chunk["choices"] = choices
    unasked = SHAPES["chat_completion"].reader(request("chat_completion", CHAT))
    assert unasked.read(data(chunk)) is Verdict.DROP
    assert unasked.usage == USAGE  # still read for the record
    asked_for = request("chat_completion", {**CHAT, "stream_options": {"include_usage": True}})
    assert SHAPES["chat_completion"].reader(asked_for).read(data(chunk)) is Verdict.RELAY


def test_every_content_chunk_is_relayed_and_done_is_held() -> None:
    reader = SHAPES["chat_completion"].reader(request("chat_completion", CHAT))
    content = {"choices": [{"index": 0, "delta": {"content": "hey"}}], "usage": USAGE}
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": USAGE}
    assert reader.read(data(content)) is Verdict.RELAY
    assert reader.read(data(finish)) is Verdict.RELAY
    assert reader.read(b"data: [DONE]\n\n") is Verdict.HOLD
    assert reader.read(data(content)) is Verdict.DROP  # nothing after [DONE]
    assert reader.text() == "heyhey"[:3] and reader.done


def test_streamed_chat_asks_the_upstream_for_usage_and_keeps_every_other_field() -> None:
    parsed = request("chat_completion", {**CHAT, "user": "u1"})
    sent = orjson.loads(SHAPES["chat_completion"].upstream_body(parsed, b""))
    assert sent == {**CHAT, "user": "u1", "stream_options": {"include_usage": True}}


def facts(kind: str, response: dict[str, Any], requested: str) -> Any:
    return read_response(SHAPES[kind].canonical(response), requested)


def test_responses_usage_lands_in_the_same_buckets() -> None:
    response = {
        "id": "resp_1",
        "model": "gpt-4o",
        "output": [{"type": "web_search_call"}, {"type": "web_search_call"}, {"type": "message"}],
        "usage": {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 30},
            "output_tokens": 50,
            "output_tokens_details": {"reasoning_tokens": 20},
        },
    }
    usage = facts("responses", response, "openai/gpt-4o").usage
    assert (usage.input_text, usage.cache_read, usage.output, usage.reasoning) == (70, 30, 30, 20)
    assert usage.search_queries == 2 and usage.total_tokens == 150


def test_responses_terminal_events_are_held_and_failed_is_an_error() -> None:
    reader = SHAPES["responses"].reader(request("responses", {"model": "openai/x", "input": "q"}))
    assert reader.read(data({"type": "response.created", "response": {"id": "r"}})) is Verdict.RELAY
    delta = {"type": "response.output_text.delta", "delta": "ab"}
    assert reader.read(data(delta, "response.output_text.delta")) is Verdict.RELAY
    assert reader.usage is None
    failed = {
        "type": "response.failed",
        "response": {"id": "r", "usage": {"input_tokens": 3, "output_tokens": 1},
                     "error": {"message": "boom"}},
    }  # fmt: skip
    assert reader.read(data(failed, "response.failed")) is Verdict.HOLD
    assert reader.done and reader.error == "response.failed: boom" and reader.text() == "ab"
    assert reader.response()["usage"]["prompt_tokens"] == 3


ANTHROPIC_USAGE = {
    "input_tokens": 4,
    "cache_creation_input_tokens": 12,
    "cache_read_input_tokens": 10,
    "cache_creation": {"ephemeral_5m_input_tokens": 2, "ephemeral_1h_input_tokens": 10},
    "output_tokens": 16,
    "server_tool_use": {"web_search_requests": 3},
}


def test_anthropic_input_tokens_exclude_the_cache() -> None:
    found = facts("messages", {"model": "claude-x", "usage": ANTHROPIC_USAGE}, "anthropic/claude-x")
    usage = found.usage
    assert usage.prompt_tokens == 26 and usage.cache_read == 10
    assert usage.cache_write + usage.cache_write_1h == 12 and usage.cache_write_1h == 10
    assert (usage.output, usage.search_queries) == (16, 3)
    assert (found.provider, found.model) == ("anthropic", "claude-x")
    with pytest.raises(UsageError):
        facts("messages", {"usage": {"input_tokens": "4"}}, "anthropic/claude-x")


def test_an_anthropic_stream_takes_each_fields_last_value_never_the_sum() -> None:
    reader = SHAPES["messages"].reader(
        request("messages", {"model": "claude-x", "max_tokens": 9, "messages": []})
    )
    placeholder = {**ANTHROPIC_USAGE, "output_tokens": 1}
    start = {"type": "message_start", "message": {"id": "m1", "model": "claude-x",
                                                  "usage": placeholder}}  # fmt: skip
    assert reader.read(data(start, "message_start")) is Verdict.RELAY
    assert reader.usage is None  # the start's output count is a placeholder
    text = {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "yo"}}
    assert reader.read(data(text, "content_block_delta")) is Verdict.RELAY
    for output in (7, 16):  # cumulative counts
        delta = {"type": "message_delta", "usage": {"output_tokens": output}}
        assert reader.read(data(delta, "message_delta")) is Verdict.RELAY
    assert reader.read(data({"type": "message_stop"}, "message_stop")) is Verdict.HOLD
    usage = read_response(reader.response(), "anthropic/claude-x").usage
    assert usage.completion_tokens == 16 and usage.prompt_tokens == 26  # start's input kept
    assert reader.response()["id"] == "m1" and reader.text() == "yo"


def test_a_bare_anthropic_model_is_recorded_with_its_provider() -> None:
    parsed = request("messages", {"model": "claude-x", "max_tokens": 5, "messages": []})
    assert parsed.model == "anthropic/claude-x"
    assert (
        request("messages", {"model": "bedrock/claude-x", "max_tokens": 5, "messages": []}).model
        == "bedrock/claude-x"
    )
    for bad in ("claude\x00x", "claude-x,claude-y", ""):
        with pytest.raises(InvalidInput) as refused:
            request("messages", {"model": bad, "max_tokens": 5, "messages": []})
        assert "Value error" not in str(refused.value)


def test_embedding_bounds_come_from_the_input() -> None:
    shape = SHAPES["embedding"]
    arrays = {"model": "openai/e", "input": [[1, 2, 3], [4, 5]]}
    bounds = shape.bounds(arrays)
    assert (bounds.prompts, bounds.max_tokens) == (2, 0)
    assert bounds.prompt_bytes == len("[[1, 2, 3], [4, 5]]")
    assert shape.prompt_tokens(arrays) == 5
    assert shape.output_bound(arrays, max_output_tokens=4096) == 0
    assert shape.prompt_tokens({"input": "abcdefgh"}) == 2
    assert not request("embedding", {**arrays, "stream": True}).stream  # never a stream


prompt_values = st.recursive(
    st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)})
        | st.fixed_dictionaries({"role": st.just("user"), "content": inner})
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(prompt=prompt_values)
def test_the_prompt_bound_covers_every_text_in_the_prompt(prompt: Any) -> None:
    """Tokens ≤ UTF-8 bytes of the text (core.budget): the bound must cover the text."""
    assert body_bytes(prompt) >= len(texts_of(prompt).encode("utf-8"))
