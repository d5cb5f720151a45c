"""``POST /v1/responses`` through the real server, driven by the official ``openai`` SDK.

Costs by hand from the shipped sheets (USD per 1M tokens): openai/gpt-4o input 2.50,
cache_read 1.25, output 10.00; openai/o3-mini input 1.10, output 4.40; perplexity/sonar
input 1.00, output 1.00, search 0.005 per query. Amounts are nano-USD. The simulator's
usage: input = 8 + ceil(len(instructions + input) / 4), gpt-4o caches half of it, 16
output tokens (plus the profile's reasoning).
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.gateway.conftest import Served

pytestmark = pytest.mark.slow

ASK = {"model": "openai/gpt-4o", "instructions": "Be brief.", "input": "Hello there, metering!"}


def only_record(served: Served) -> dict[str, Any]:
    records = served.records()
    assert len(records) == 1
    return records[0]


def test_a_whole_response_is_metered_from_its_usage(served: Served) -> None:
    raw = served.client().responses.with_raw_response.create(**ASK)
    response = raw.parse()
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (16, 16)
    assert response.usage.input_tokens_details.cached_tokens == 8
    record = only_record(served)
    assert record["request_id"] == raw.headers["x-metering-request-id"]
    assert record["request_type"] == "responses"
    assert (record["prompt_tokens"], record["cached_read_tokens"]) == (16, 8)
    assert (record["prompt_text_tokens"], record["completion_tokens"]) == (8, 16)
    assert record["input_cost"] == 20_000  # 8 x 2.50
    assert record["cache_read_cost"] == 10_000  # 8 x 1.25 (inside input_tokens: not twice)
    assert record["output_cost"] == 160_000  # 16 x 10.00
    assert record["total_cost"] == 190_000
    assert (record["status"], record["stream"], record["response_id"]) == (
        "success",
        False,
        response.id,
    )
    assert served.simulator.received[-1]["path"] == "/v1/responses"
    assert served.simulator.received[-1]["body"] == ASK  # forwarded unchanged


def test_reasoning_is_inside_output_tokens(served: Served) -> None:
    response = served.client().responses.create(
        model="openai/o3-mini", input="think", max_output_tokens=100
    )
    assert response.usage is not None
    details = response.usage.output_tokens_details
    assert (response.usage.output_tokens, details.reasoning_tokens) == (64, 48)
    record = only_record(served)
    assert (record["completion_tokens"], record["reasoning_tokens"]) == (64, 48)
    assert record["completion_text_tokens"] == 16
    assert record["output_cost"] == 16 * 4_400  # the reasoning is not billed twice
    assert record["reasoning_cost"] == 48 * 4_400


def test_each_web_search_call_is_one_search_query(served: Served) -> None:
    response = served.client().responses.create(
        model="perplexity/sonar", input="news?", tools=[{"type": "web_search"}]
    )
    searches = [item for item in response.output if item.type == "web_search_call"]
    assert len(searches) == 1
    record = only_record(served)
    assert record["search_queries"] == 1
    assert record["search_cost"] == 5_000_000  # $0.005


def test_a_stream_is_relayed_event_by_event_and_metered_from_its_terminal_event(
    served: Served,
) -> None:
    events = list(served.client().responses.create(**ASK, stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created"
    assert kinds.count("response.output_text.delta") >= 2
    assert kinds[-1] == "response.completed"  # held back until the record, then sent
    final = events[-1].response  # type: ignore[union-attr]
    assert final.usage is not None and final.usage.input_tokens == 16
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert text == final.output_text
    record = only_record(served)
    assert (record["stream"], record["status"]) == (True, "success")
    assert record["usage_estimated"] is False
    assert (record["prompt_tokens"], record["cached_read_tokens"]) == (16, 8)
    assert record["total_cost"] == 190_000
    assert record["response_id"] == final.id


def test_a_failed_response_is_recorded_as_an_upstream_error_billed_from_its_usage(
    served: Served,
) -> None:
    stream = served.client().responses.create(
        **ASK, stream=True, extra_body={"sim": {"terminal": "response.failed"}}
    )
    kinds = [event.type for event in stream]
    assert kinds[-1] == "response.failed"
    record = only_record(served)
    assert record["status"] == "upstream_error"
    assert "response.failed" in record["error_message"]
    assert record["total_cost"] == 190_000


def test_a_stream_cut_before_its_terminal_event_is_estimated(served: Served) -> None:
    stream = served.client().responses.create(
        **ASK, stream=True, extra_body={"sim": {"cut_after": 1}}
    )
    seen: list[str] = []
    with pytest.raises(openai.APIError, match="upstream"):
        for event in stream:
            seen.append(event.type)
    assert "response.completed" not in seen
    record = only_record(served)
    assert (record["status"], record["usage_estimated"]) == ("stream_cut", True)
    assert record["cost_source"] == "estimated"
    assert record["total_cost"] > 0  # never silently $0


def test_an_invalid_request_is_refused_before_the_upstream(served: Served) -> None:
    client = served.client()
    for bad, needle in (
        ({"model": "gpt-4o", "input": "x"}, "provider/model"),
        ({"model": "openai/gpt-4o\u0000x", "input": "x"}, "control characters"),
        ({"model": "openai/gpt-4o", "input": 5}, "input"),
        ({"model": "openai/gpt-4o", "input": "x", "max_output_tokens": "9"}, "max_output_tokens"),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            client.post("/responses", body=bad, cast_to=object)
        message = refused.value.response.json()["error"]["message"]
        assert needle in message and "Value error" not in message
    assert served.simulator.received == []
    assert served.records() == []
