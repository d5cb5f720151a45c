"""Anthropic Messages (``/anthropic/v1/messages``, ``/v1/messages``) through the real
server, driven by the official ``anthropic`` SDK with the virtual key in ``x-api-key``.

anthropic/claude-sonnet-4-5 (USD per 1M tokens): input 3.00, cache_read 0.30,
cache_write 3.75, output 15.00. The simulator's usage for system "You are terse." and
"Hi Claude": 4 uncached input, 10 cache read, 12 cache write, 16 output tokens —
``input_tokens`` excludes the cache tokens, so the prompt is 26.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anthropic
import httpx2
import pytest

from metering.storage.budgets import set_budget
from metering.storage.keys import create_key
from metering.storage.owners import find_owner
from tests.gateway.conftest import Served

pytestmark = pytest.mark.slow

ASK: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "system": "You are terse.",
    "messages": [{"role": "user", "content": "Hi Claude"}],
}
COST = 4 * 3_000 + 10 * 300 + 12 * 3_750 + 16 * 15_000  # 300_000 nano-USD


def only_record(served: Served) -> dict[str, Any]:
    records = served.records()
    assert len(records) == 1
    return records[0]


def assert_the_usual_record(record: dict[str, Any]) -> None:
    assert record["request_type"] == "messages"
    assert record["requested_model"] == "anthropic/claude-sonnet-4-5"  # bare → anthropic/
    assert (record["provider"], record["model"]) == ("anthropic", "claude-sonnet-4-5")
    assert (record["prompt_tokens"], record["prompt_text_tokens"]) == (26, 4)
    assert (record["cached_read_tokens"], record["cached_write_tokens"]) == (10, 12)
    assert record["completion_tokens"] == 16
    assert (record["input_cost"], record["cache_read_cost"]) == (12_000, 3_000)
    assert (record["cache_write_cost"], record["output_cost"]) == (45_000, 240_000)
    assert record["total_cost"] == COST


def test_a_message_is_metered_with_input_tokens_excluding_the_cache(served: Served) -> None:
    client = served.anthropic_client()
    versions = {"anthropic-version": "2023-06-01", "anthropic-beta": "tools-2024"}
    message = client.messages.create(**ASK, extra_headers=versions)
    assert message.usage.input_tokens == 4
    record = only_record(served)
    assert_the_usual_record(record)
    assert (record["status"], record["stream"], record["response_id"]) == (
        "success",
        False,
        message.id,
    )
    sent = served.simulator.received[-1]
    assert sent["path"] == "/anthropic/v1/messages"
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert sent["headers"]["anthropic-beta"] == "tools-2024"
    assert served.secret not in str(sent["headers"])  # x-api-key is never forwarded
    assert sent["body"] == ASK


def test_the_plain_v1_messages_path_and_a_provider_model(served: Served) -> None:
    response = httpx2.post(
        served.url + "/v1/messages",
        json={**ASK, "model": "anthropic/claude-sonnet-4-5"},
        headers={"x-api-key": served.secret, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200, response.text
    assert_the_usual_record(only_record(served))


def test_a_stream_takes_each_fields_last_delta_never_the_sum(served: Served) -> None:
    # message_start says 999 input tokens; the cumulative message_delta says 4.
    steer = {"sim": {"delta_usage": "full", "start_input": 999}}
    with served.anthropic_client().messages.stream(**ASK, extra_body=steer) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.output_tokens == 16
    record = only_record(served)
    assert_the_usual_record(record)
    assert (record["stream"], record["status"]) == (True, "success")


def test_a_stream_without_usage_in_its_delta_falls_back_to_message_start(served: Served) -> None:
    events = list(served.anthropic_client().messages.create(**ASK, stream=True))
    assert [e.type for e in events][-1] == "message_stop"  # held until the record, then sent
    assert_the_usual_record(only_record(served))


def test_a_cut_stream_is_estimated_and_ends_with_an_anthropic_error_event(served: Served) -> None:
    stream = served.anthropic_client().messages.create(
        **ASK, stream=True, extra_body={"sim": {"cut_after": 1}}
    )
    with pytest.raises(anthropic.APIStatusError):
        for _ in stream:
            pass
    record = only_record(served)
    assert (record["status"], record["usage_estimated"]) == ("stream_cut", True)
    assert record["total_cost"] > 0


def test_web_search_requests_are_search_queries(served: Served) -> None:
    served.anthropic_client().messages.create(
        **ASK, tools=[{"type": "web_search_20250305", "name": "web_search"}]
    )
    assert only_record(served)["search_queries"] == 1


def test_our_errors_come_in_anthropics_shape(served: Served) -> None:
    with pytest.raises(anthropic.AuthenticationError) as no_key:
        anthropic.Anthropic(
            base_url=served.url + "/anthropic", api_key="sk-bf-nobody", max_retries=0
        ).messages.create(**ASK)
    body: Any = no_key.value.body
    assert body["type"] == "error" and set(body) == {"type", "error"}
    assert body["error"]["type"] == "virtual_key_not_found" and body["error"]["message"]
    no_max = httpx2.post(  # the SDK itself refuses to send it
        served.url + "/anthropic/v1/messages",
        json={k: v for k, v in ASK.items() if k != "max_tokens"},
        headers={"x-api-key": served.secret},
    )
    assert no_max.status_code == 400
    assert no_max.json()["type"] == "error"
    assert no_max.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in no_max.json()["error"]["message"]
    client = served.anthropic_client()
    with served.engine.begin() as conn:
        key = find_owner(conn, "key", "app")[0]
        set_budget(
            conn,
            owner_type="key",
            owner_id=key,
            limit_nano=1,
            period="monthly",
            now=datetime.now(UTC).replace(tzinfo=None),
        )
        limited = create_key(conn, name="slow", rpm_limit=1).secret
    with pytest.raises(anthropic.APIStatusError) as broke:
        client.messages.create(**ASK)
    assert broke.value.status_code == 402
    assert broke.value.body["error"]["type"] == "budget_exceeded"  # type: ignore[index]
    slow = served.anthropic_client(limited)
    slow.messages.create(**ASK)
    with pytest.raises(anthropic.RateLimitError) as limited_error:
        slow.messages.create(**ASK)
    assert limited_error.value.body["type"] == "error"  # type: ignore[index]
    assert len(served.records()) == 1  # only the admitted call reached the upstream


def test_the_upstreams_own_error_is_passed_through(served: Served) -> None:
    with pytest.raises(anthropic.InternalServerError) as failed:
        served.anthropic_client().messages.create(**ASK, extra_body={"sim": {"status": 529}})
    assert failed.value.status_code == 529
    assert failed.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    record = only_record(served)
    assert (record["status"], record["http_status"]) == ("upstream_error", 529)


def test_one_hour_cache_writes_are_billed_at_their_own_rate(served: Served) -> None:
    # 20 of the cache-write tokens go to the 1-hour cache ($6.00 per 1M, not $3.75).
    served.anthropic_client().messages.create(**ASK, extra_body={"sim": {"cache_1h": 20}})
    record = only_record(served)
    assert (record["cached_write_tokens"], record["cached_write_1h_tokens"]) == (20, 20)
    assert (record["prompt_text_tokens"], record["cached_read_tokens"]) == (1, 13)
    assert record["cache_write_cost"] == 20 * 6_000
    assert record["total_cost"] == 1 * 3_000 + 13 * 300 + 20 * 6_000 + 16 * 15_000
