"""The simulated upstream's API shapes, parsed by the official SDKs pointed straight at
it (no metering server): Responses, embeddings, Anthropic Messages, the model list."""

from __future__ import annotations

import base64
import json
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from metering.simulator import PROFILES, Simulator

anthropic = pytest.importorskip("anthropic")

GATE_WAIT_SECONDS = 0.3


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator() as started:
        yield started


@pytest.fixture
def oai(sim: Simulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)


@pytest.fixture
def claude(sim: Simulator) -> Any:
    return anthropic.Anthropic(base_url=sim.url + "/anthropic", api_key="x", max_retries=0)


def sse(sim: Simulator, path: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """(the events' data, whether the stream ended cleanly) of a raw streamed request."""
    events: list[dict[str, Any]] = []
    kinds: list[str] = []
    try:
        with httpx2.stream("POST", sim.url + path, json=body, timeout=10) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("event: "):
                    kinds.append(line[len("event: ") :])
                elif line.startswith("data: "):
                    events.append(json.loads(line[len("data: ") :]))
    except httpx2.RemoteProtocolError:  # the simulator cut the connection
        return events, False
    assert kinds == [e["type"] for e in events]  # every event names its type twice
    return events, True


# ---- POST /v1/responses ------------------------------------------------------------------


def test_responses_whole_answer(sim: Simulator, oai: openai.OpenAI) -> None:
    answer = oai.responses.create(
        model="openai/gpt-4o", instructions="Be brief.", input="Hello there, metering!"
    )
    # 8 + ceil(31 chars / 4) = 16 input tokens, half of them cached (gpt-4o: 50 %)
    assert answer.usage is not None and answer.usage.to_dict() == {
        "input_tokens": 16,
        "input_tokens_details": {"cached_tokens": 8, "cache_write_tokens": 0},
        "output_tokens": 16,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 32,
    }
    assert answer.status == "completed" and answer.model == "gpt-4o"
    assert answer.id.startswith("resp_sim-") and answer.object == "response"
    assert [item.type for item in answer.output] == ["message"]
    assert len(answer.output_text.split(" ")) == 16
    assert answer.to_dict()["extra_fields"] == {
        "request_type": "responses",
        "provider": "openai",
        "model_requested": "gpt-4o",
        "latency": 3,
    }
    assert sim.received[-1]["path"] == "/v1/responses"
    assert sim.received[-1]["body"]["instructions"] == "Be brief."


def test_responses_search_items_reasoning_and_output_limit(oai: openai.OpenAI) -> None:
    answer = oai.responses.create(
        model="perplexity/sonar-deep-research",
        input=[
            {"role": "user", "content": "Deep research now"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "!!"}]},
        ],
        tools=[{"type": "web_search"}],
        max_output_tokens=20,
    )
    assert [item.type for item in answer.output] == [*["web_search_call"] * 3, "message"]
    first = answer.output[0]
    assert first.type == "web_search_call" and first.action.type == "search"
    assert first.action.query == "Deep research now!!"
    # 8 + ceil(19 / 4) in; the text takes 16 of the 20 allowed, reasoning the 4 left;
    # the provider reports its cost: 13 x 2 + 20 x 8 USD per 1M, 3 searches x 0.005
    assert answer.usage is not None and answer.usage.to_dict() == {
        "input_tokens": 13,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 4},
        "total_tokens": 33,
        "cost": {
            "input_tokens_cost": 2.6e-05,
            "output_tokens_cost": 0.00016,
            "search_queries_cost": 0.015,
            "total_cost": 0.015186,
        },
    }


def test_responses_search_tool_asks_for_one_search(oai: openai.OpenAI) -> None:
    answer = oai.responses.create(
        model="openai/o3-mini", input="find it", tools=[{"type": "web_search_preview"}]
    )
    assert [item.type for item in answer.output] == ["web_search_call", "message"]
    usage = answer.usage
    assert usage is not None
    assert (usage.output_tokens, usage.output_tokens_details.reasoning_tokens) == (64, 48)


def test_responses_stream(oai: openai.OpenAI) -> None:
    stream = oai.responses.create(model="openai/o3-mini", input="stream me", stream=True)
    events = list(stream)
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[0].response.status == "in_progress" and events[0].response.usage is None
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    done = events[-1]
    assert done.type == "response.completed"
    assert "".join(deltas) == done.response.output_text
    usage = done.response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (11, 64, 75)


def test_responses_stream_helper_final_response(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="openai/gpt-4o", input="stream me") as stream:
        final = stream.get_final_response()
    assert final.usage is not None and final.usage.input_tokens_details.cached_tokens == 5


@pytest.mark.parametrize("terminal", ["response.incomplete", "response.failed"])
def test_responses_stream_other_terminals(oai: openai.OpenAI, terminal: str) -> None:
    events = list(
        oai.responses.create(
            model="openai/gpt-4o-mini",
            input="x",
            stream=True,
            extra_body={"sim": {"terminal": terminal, "chunks": 2}},
        )
    )
    last = events[-1]
    assert last.type == terminal
    assert last.type in ("response.incomplete", "response.failed")
    assert last.response.status == terminal.removeprefix("response.")
    assert last.response.usage is not None and last.response.usage.output_tokens == 16
    if terminal == "response.failed":
        assert last.response.error is not None and last.response.error.code == "server_error"
    else:
        assert last.response.incomplete_details is not None


def test_responses_stream_cut_before_the_terminal(sim: Simulator) -> None:
    body = {"model": "openai/gpt-4o", "input": "x", "stream": True, "sim": {"cut_after": 2}}
    events, clean = sse(sim, "/v1/responses", body)
    assert not clean
    assert [e["type"] for e in events][-2:] == ["response.output_text.delta"] * 2
    # every delta sent: still no done events and no terminal one
    body["sim"] = {"cut_after": 9, "chunks": 3}
    events, clean = sse(sim, "/v1/responses", body)
    assert not clean and events[-1]["type"] == "response.output_text.delta"


def test_responses_steered_usage_answer_and_error(oai: openai.OpenAI, sim: Simulator) -> None:
    bare = oai.responses.create(
        model="openai/gpt-4o", input="x", extra_body={"sim": {"usage": None}}
    )
    assert bare.usage is None
    body = {"model": "openai/gpt-4o", "input": "x", "stream": True}
    events, clean = sse(sim, "/v1/responses", {**body, "sim": {"answer": {"id": "resp_other"}}})
    assert clean and events[-1]["response"]["id"] == "resp_other"
    assert events[0]["response"]["id"] != "resp_other"
    with pytest.raises(openai.InternalServerError) as failed:
        oai.responses.create(model="openai/gpt-4o", input="x", extra_body={"sim": {"status": 503}})
    assert failed.value.status_code == 503


def test_responses_fallback_serves(oai: openai.OpenAI) -> None:
    answer = oai.responses.create(
        model="openai/gpt-4o",
        input="x",
        extra_body={"fallbacks": ["gemini/gemini-2.5-pro"], "sim": {"fail_primary": True}},
    )
    assert answer.model == "gemini-2.5-pro"
    assert answer.model_dump()["extra_fields"]["provider"] == "gemini"


def test_responses_hold_waits_for_the_gate(sim: Simulator, oai: openai.OpenAI) -> None:
    answers: list[object] = []
    body = {"sim": {"hold": "responses"}}

    def ask() -> None:
        answers.append(oai.responses.create(model="openai/gpt-4o", input="x", extra_body=body))

    asking = threading.Thread(target=ask)
    asking.start()
    time.sleep(GATE_WAIT_SECONDS)
    assert answers == []
    sim.open_gate("responses")
    asking.join(timeout=10)
    assert len(answers) == 1


# ---- POST /v1/embeddings -----------------------------------------------------------------


def test_embeddings_default_base64_decodes_to_the_float_answer(
    sim: Simulator, oai: openai.OpenAI
) -> None:
    decoded = oai.embeddings.create(model="openai/text-embedding-3-small", input="hello world")
    assert sim.received[-1]["body"]["encoding_format"] == "base64"
    floats = oai.embeddings.create(
        model="openai/text-embedding-3-small", input="hello world", encoding_format="float"
    )
    assert decoded.data[0].embedding == floats.data[0].embedding
    assert len(floats.data[0].embedding) == 8
    assert all(-1 <= v <= 1 for v in floats.data[0].embedding)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 3  # ceil(11 / 4)
    assert floats.model == "text-embedding-3-small" and floats.object == "list"
    raw = oai.embeddings.create(
        model="openai/text-embedding-3-small", input="hello world", encoding_format="base64"
    )
    packed = base64.b64decode(str(raw.data[0].embedding))
    assert list(struct.unpack("<8f", packed)) == floats.data[0].embedding


@pytest.mark.parametrize(
    ("given", "count", "tokens"),
    [
        (["one", "two words", "a longer third one"], 3, 1 + 3 + 5),
        ([1, 2, 3, 4], 1, 4),
        ([[1, 2, 3], [4, 5]], 2, 5),
    ],
)
def test_embeddings_inputs(oai: openai.OpenAI, given: Any, count: int, tokens: int) -> None:
    answer = oai.embeddings.create(
        model="openai/text-embedding-3-large", input=given, dimensions=4, encoding_format="float"
    )
    assert [d.index for d in answer.data] == list(range(count))
    assert {len(d.embedding) for d in answer.data} == {4}
    assert answer.usage.prompt_tokens == answer.usage.total_tokens == tokens
    extra = answer.model_dump()["extra_fields"]
    assert extra == {
        "request_type": "embedding",
        "provider": "openai",
        "model_requested": "text-embedding-3-large",
        "latency": 3,
    }


def test_embeddings_refuse_bad_input(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        oai.embeddings.create(model="openai/text-embedding-3-small", input=[])


# ---- GET /v1/models ----------------------------------------------------------------------


def test_models_list(sim: Simulator, oai: openai.OpenAI) -> None:
    models = list(oai.models.list())
    expected = [*PROFILES, "openai/text-embedding-3-small", "openai/text-embedding-3-large"]
    assert [m.id for m in models] == expected
    assert models[3].owned_by == "anthropic" and models[3].created == 1_700_000_000
    assert sim.received[-1]["path"] == "/v1/models" and sim.received[-1]["body"] is None


# ---- POST /anthropic/v1/messages, /v1/messages -------------------------------------------

HELLO = [{"role": "user", "content": "Hi Claude"}]


def test_messages_whole_answer_and_headers(sim: Simulator, claude: Any) -> None:
    message = claude.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system="You are terse.",
        messages=HELLO,
        metadata={"user_id": "u-1"},
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    # 8 + ceil(23 / 4) + 12 written = 26; 40 % of it read = 10; 26 - 10 - 12 = 4 uncached
    usage = message.usage
    assert usage.input_tokens == 4
    assert usage.cache_read_input_tokens == 10
    assert usage.cache_creation_input_tokens == 12
    assert usage.cache_creation.ephemeral_5m_input_tokens == 12
    assert usage.cache_creation.ephemeral_1h_input_tokens == 0
    assert usage.output_tokens == 16 and usage.server_tool_use is None
    assert message.model == "claude-sonnet-4-5" and message.id.startswith("msg_sim-")
    assert message.stop_reason == "end_turn" and len(message.content[0].text.split()) == 16
    sent = sim.received[-1]
    assert sent["path"] == "/anthropic/v1/messages"
    assert sent["headers"]["anthropic-version"]
    assert sent["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert sent["body"]["metadata"] == {"user_id": "u-1"}


def test_messages_plain_route_provider_model_and_reasoning(sim: Simulator) -> None:
    client = anthropic.Anthropic(base_url=sim.url, api_key="x", max_retries=0)
    message = client.messages.create(model="openai/o3-mini", max_tokens=40, messages=HELLO)
    assert sim.received[-1]["path"] == "/v1/messages"
    assert message.model == "o3-mini"
    # the text takes 16 of the 40, reasoning 24 of its 48; 8 + ceil(9 / 4), nothing cached
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 40)
    assert message.usage.cache_read_input_tokens == 0


@pytest.mark.parametrize(("one_hour", "write", "read"), [(5, 12, 10), (20, 20, 13)])
def test_messages_one_hour_cache_writes(claude: Any, one_hour: int, write: int, read: int) -> None:
    message = claude.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=100,
        system="You are terse.",
        messages=HELLO,
        extra_body={"sim": {"cache_1h": one_hour}},
    )
    usage = message.usage
    assert usage.cache_creation_input_tokens == write
    assert usage.cache_creation.ephemeral_1h_input_tokens == one_hour
    assert usage.cache_creation.ephemeral_5m_input_tokens == write - one_hour
    assert usage.cache_read_input_tokens == read
    assert usage.input_tokens == 8 + 6 + write - read - write


@pytest.mark.parametrize(
    ("model", "searches"), [("claude-sonnet-4-5", 1), ("perplexity/sonar-deep-research", 3)]
)
def test_messages_web_search_requests(claude: Any, model: str, searches: int) -> None:
    tool = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
    message = claude.messages.create(model=model, max_tokens=50, messages=HELLO, tools=[tool])
    assert message.usage.server_tool_use.web_search_requests == searches


def test_messages_stream_final_usage(claude: Any) -> None:
    whole = claude.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=HELLO)
    with claude.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=HELLO
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text == whole.content[0].text
    assert final.usage.to_dict() == whole.usage.to_dict()
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 16)


def test_messages_stream_events(claude: Any) -> None:
    events = list(
        claude.messages.create(
            model="claude-sonnet-4-5", max_tokens=100, messages=HELLO, stream=True
        )
    )
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the SDK drops the ping
    start, delta = events[0], events[-2]
    assert start.message.usage.output_tokens == 1
    assert start.message.usage.input_tokens == 2
    assert start.message.usage.cache_read_input_tokens == 9
    assert delta.usage.to_dict() == {"output_tokens": 16}
    assert delta.delta.stop_reason == "end_turn"


def test_messages_stream_last_delta_counts_not_the_sum(sim: Simulator, claude: Any) -> None:
    steer = {"sim": {"delta_usage": "full", "start_input": 999}}
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": HELLO, "stream": True}
    events, clean = sse(sim, "/anthropic/v1/messages", {**body, **steer})
    assert clean and "ping" in [e["type"] for e in events]
    assert events[0]["message"]["usage"]["input_tokens"] == 999
    assert events[-2]["usage"] == {
        "input_tokens": 2,
        "cache_creation_input_tokens": 12,
        "cache_read_input_tokens": 9,
        "output_tokens": 16,
    }
    with claude.messages.stream(
        model="claude-sonnet-4-5", max_tokens=100, messages=HELLO, extra_body=steer
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.input_tokens == 2


def test_messages_stream_cut(sim: Simulator) -> None:
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": HELLO, "stream": True}
    events, clean = sse(sim, "/anthropic/v1/messages", {**body, "sim": {"cut_after": 2}})
    assert not clean
    assert [e["type"] for e in events][-3:] == ["ping", *["content_block_delta"] * 2]


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (500, "InternalServerError", "api_error"),
        (529, "OverloadedError", "overloaded_error"),
        (429, "RateLimitError", "rate_limit_error"),
    ],
)
def test_messages_errors_in_anthropic_shape(
    claude: Any, status: int, error: str, kind: str
) -> None:
    with pytest.raises(getattr(anthropic, error)) as failed:
        claude.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=10,
            messages=HELLO,
            extra_body={"sim": {"status": status}},
        )
    assert failed.value.status_code == status
    assert failed.value.body == {
        "type": "error",
        "error": {"type": kind, "message": "simulated provider failure"},
    }


def test_messages_without_max_tokens_is_refused(sim: Simulator) -> None:
    answer = httpx2.post(
        sim.url + "/anthropic/v1/messages",
        json={"model": "claude-sonnet-4-5", "messages": HELLO},
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json()["type"] == "error"
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_messages_steered_usage(claude: Any) -> None:
    usage = {"input_tokens": 7, "output_tokens": 3}
    message = claude.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=10,
        messages=HELLO,
        extra_body={"sim": {"usage": usage}},
    )
    assert message.usage.to_dict() == usage
