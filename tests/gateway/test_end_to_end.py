"""``metering serve`` as a real process against the simulated upstream, driven by the
official ``openai`` SDK, on SQLite and PostgreSQL (the ``db_url`` fixture).

Hand-computed costs use the shipped sheets (USD per 1M tokens):
openai/gpt-4o input 2.50, cache_read 1.25, output 10.00; openai/o3-mini input 1.10,
output 4.40 (reasoning at the output rate); anthropic/claude-sonnet-4-5 input 3.00,
cache_read 0.30, cache_write 3.75, output 15.00; perplexity/sonar-deep-research
input 2.00, output 8.00, reasoning 3.00, citation 2.00, search 0.005 per query.
Amounts below are nano-USD.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.gateway.conftest import Served

pytestmark = pytest.mark.slow


def assert_usage_matches(record: dict[str, Any], usage: Any) -> None:
    """The record's token columns equal the upstream's usage, field by field."""
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    assert record["prompt_tokens"] == usage.prompt_tokens
    assert record["completion_tokens"] == usage.completion_tokens
    assert record["total_tokens"] == usage.total_tokens
    assert record["prompt_text_tokens"] == prompt.text_tokens
    assert record["cached_read_tokens"] == prompt.cached_read_tokens
    assert record["cached_write_tokens"] == prompt.cached_write_tokens
    assert record["completion_text_tokens"] == completion.text_tokens
    assert record["reasoning_tokens"] == completion.reasoning_tokens
    assert record["citation_tokens"] == completion.citation_tokens
    assert record["search_queries"] == completion.num_search_queries


def only_record(served: Served) -> dict[str, Any]:
    records = served.records()
    assert len(records) == 1
    return records[0]


def test_completion_string_prompt_with_n(served: Served) -> None:
    raw = served.client().completions.with_raw_response.create(
        model="openai/gpt-4o", prompt="hello world", n=2
    )
    response = raw.parse()
    record = only_record(served)
    assert record["request_id"] == raw.headers["x-metering-request-id"]
    assert len(response.choices) == 2
    assert_usage_matches(record, response.usage)
    # prompt 11 = 6 uncached + 5 cached read; completion 16 per choice x 2
    assert (record["prompt_text_tokens"], record["cached_read_tokens"]) == (6, 5)
    assert record["input_cost"] == 15_000  # 6 x 2.50
    assert record["cache_read_cost"] == 6_250  # 5 x 1.25
    assert record["output_cost"] == 320_000  # 32 x 10.00
    assert record["total_cost"] == 341_250
    assert record["cost_source"] == "computed"
    assert record["price_version_id"] is not None
    assert (record["provider"], record["model"], record["requested_model"]) == (
        "openai",
        "gpt-4o",
        "openai/gpt-4o",
    )
    assert (record["status"], record["http_status"], record["stream"]) == ("success", 200, False)
    assert record["response_id"] == response.id
    assert served.rollup_requests() == 1
    # The virtual key is never forwarded; the upstream key is.
    sent = served.simulator.received[-1]
    assert sent["headers"]["Authorization"] == "Bearer upstream-secret"
    assert served.secret not in str(sent["headers"])
    assert sent["body"] == {"model": "openai/gpt-4o", "prompt": "hello world", "n": 2}


def test_completion_list_prompt_and_unknown_fields_forwarded(served: Served) -> None:
    response = served.client().completions.create(
        model="openai/gpt-4o",
        prompt=["one two", "three"],
        max_tokens=100,
        temperature=0.5,
        extra_body={"custom_field": {"kept": [1, 2]}},
    )
    record = only_record(served)
    assert len(response.choices) == 2
    assert_usage_matches(record, response.usage)
    # prompts 10 + 10 = 20 (10 cached read); completion 2 x 16
    assert record["total_cost"] == 25_000 + 12_500 + 320_000
    body = served.simulator.received[-1]["body"]
    assert body["custom_field"] == {"kept": [1, 2]}
    assert body["temperature"] == 0.5


def test_fallback_is_billed_to_the_serving_provider(served: Served) -> None:
    response = served.client().completions.create(
        model="openai/gpt-4o",
        prompt="hello world",
        extra_body={"fallbacks": ["anthropic/claude-sonnet-4-5"], "sim": {"fail_primary": True}},
    )
    record = only_record(served)
    assert response.model == "claude-sonnet-4-5"
    assert_usage_matches(record, response.usage)
    assert (record["provider"], record["model"]) == ("anthropic", "claude-sonnet-4-5")
    assert record["requested_model"] == "openai/gpt-4o"
    # prompt 23 = 2 uncached + 9 cache read + 12 cache write; completion 16
    assert record["input_cost"] == 6_000
    assert record["cache_read_cost"] == 2_700
    assert record["cache_write_cost"] == 45_000
    assert record["output_cost"] == 240_000
    assert record["computed_cost"] == 293_700
    # The upstream reported 0.000309 USD; the reported cost wins (default policy).
    assert record["reported_cost"] == 309_000
    assert record["total_cost"] == 309_000
    assert record["adjustment_cost"] == 309_000 - 293_700
    assert record["cost_source"] == "reported"


def test_chat_completion_with_citations_and_searches(served: Served) -> None:
    response = served.client().chat.completions.create(
        model="perplexity/sonar-deep-research", messages=[{"role": "user", "content": "hi"}]
    )
    record = only_record(served)
    assert response.choices[0].message.content
    assert_usage_matches(record, response.usage)
    assert record["request_type"] == "chat_completion"
    assert record["input_cost"] == 18_000  # 9 x 2.00
    assert record["output_cost"] == 128_000  # 16 x 8.00
    assert record["reasoning_cost"] == 120_000  # 40 x 3.00
    assert record["citation_cost"] == 240_000  # 120 x 2.00
    assert record["search_cost"] == 15_000_000  # 3 x 0.005 USD
    assert record["computed_cost"] == 15_506_000
    assert record["reported_cost"] == 15_466_000
    assert record["total_cost"] == 15_466_000


def test_gateway_direct_cache_hit_is_billed_zero(served: Served) -> None:
    response = served.client().completions.create(
        model="openai/gpt-4o", prompt="hello world", extra_body={"sim": {"cache": "direct"}}
    )
    record = only_record(served)
    assert_usage_matches(record, response.usage)
    assert (record["cache_hit"], record["cache_hit_type"]) == (True, "direct")
    assert record["total_cost"] == 0


def test_stream_usage_from_the_final_chunk(served: Served) -> None:
    chunks = list(
        served.client().completions.create(
            model="openai/o3-mini",
            prompt="stream me",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and not usage_chunks[0].choices
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text
    record = only_record(served)
    assert_usage_matches(record, usage_chunks[0].usage)
    assert record["stream"] is True and record["status"] == "success"
    # prompt 11 x 1.10 + 16 output x 4.40 + 48 reasoning x 4.40
    assert record["total_cost"] == 12_100 + 70_400 + 211_200
    assert record["cost_source"] == "computed"
    assert served.simulator.received[-1]["body"]["stream_options"] == {"include_usage": True}


def test_stream_without_usage_request_still_recorded(served: Served) -> None:
    chunks = list(
        served.client().chat.completions.create(
            model="openai/gpt-4o",
            messages=[{"role": "user", "content": "hello world"}],
            stream=True,
        )
    )
    assert all(c.usage is None for c in chunks)  # the usage chunk we asked for is not relayed
    record = only_record(served)
    assert record["cost_source"] == "computed"
    assert record["completion_tokens"] == 16
    # The upstream was asked for usage even though the client was not.
    assert served.simulator.received[-1]["body"]["stream_options"] == {"include_usage": True}
