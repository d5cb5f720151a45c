"""Reservation sizes bound every bill the upstream can produce; allow/deny and soft limits."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.core.budget import (
    PROMPT_OVERHEAD_TOKENS,
    BudgetState,
    RequestShape,
    crosses_soft_limit,
    first_refusal,
    refusal_message,
    reservation_nano,
    search_queries_bound_for,
    shape_of_request,
    soft_limit_reached,
    worst_case_usage,
)
from metering.core.pricing import PriceVersion, Rates, Tier, price_usage
from metering.core.usage import normalize_usage
from metering.errors import InvalidInput, UnboundedRequest

D = Decimal

GPT4O = PriceVersion(
    provider="openai",
    model="gpt-4o",
    effective_from=date(2024, 1, 1),
    rates=Rates(input=D("2.50"), cache_read=D("1.25"), output=D("10.00")),
    max_input_tokens=128000,
    max_output_tokens=16384,
)
# Long-context tier, dearer cache write than input, reasoning dearer than output,
# citations, searches and a per-request price: every way a bill can grow.
TIERED = PriceVersion(
    provider="gemini",
    model="gemini-x",
    effective_from=date(2024, 1, 1),
    rates=Rates(
        input=D("1.25"),
        cache_write=D("4.00"),
        output=D("10.00"),
        reasoning=D("12.00"),
        citation=D("2.00"),
        search_query=D("0.035"),
        request=D("0.001"),
    ),
    tiers=(Tier(200_000, Rates(input=D("2.50"), output=D("15.00"))),),
    max_input_tokens=1_048_576,
    max_output_tokens=65536,
)
# A 1-hour cache write dearer than every other input rate.
CLAUDE = PriceVersion(
    provider="anthropic",
    model="claude-sonnet-4-5",
    effective_from=date(2024, 1, 1),
    rates=Rates(
        input=D("3.00"),
        cache_read=D("0.30"),
        cache_write=D("3.75"),
        cache_write_1h=D("6.00"),
        output=D("15.00"),
    ),
    max_input_tokens=200_000,
    max_output_tokens=64_000,
)


def test_shape_of_a_completion_batch() -> None:
    body = {"model": "openai/gpt-4o", "prompt": ["a", "b", "c"], "max_tokens": 100, "n": 2}
    shape = shape_of_request(body)
    assert shape.prompts == 3
    assert shape.choices == 2
    assert shape.max_tokens == 100
    assert shape.prompt_bytes >= len("abc")
    assert not shape.non_text_input


def test_shape_best_of_and_token_id_prompts() -> None:
    assert shape_of_request({"prompt": [1, 2, 3], "best_of": 5, "n": 2}).choices == 5
    assert shape_of_request({"prompt": [1, 2, 3]}).prompts == 1
    assert shape_of_request({"prompt": [[1, 2], [3]]}).prompts == 2


def test_shape_of_chat_with_an_image_is_not_bounded_by_size() -> None:
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                ],
            }
        ],
        "max_completion_tokens": 50,
        "max_tokens": 20,
    }
    shape = shape_of_request(body)
    assert shape.non_text_input
    assert shape.max_tokens == 50  # the larger of the two limits
    usage = worst_case_usage(shape, GPT4O)
    assert usage.prompt_tokens == 128000


def test_non_ascii_prompt_bytes_bound_utf8() -> None:
    text = "日本語🙂" * 10
    shape = shape_of_request({"prompt": text})
    assert shape.prompt_bytes >= len(text.encode("utf-8"))


@pytest.mark.parametrize(
    "body",
    [{"max_tokens": -1}, {"max_tokens": True}, {"n": 0}, {"best_of": "2"}, {"prompt": 3}],
)
def test_shape_rejects_bad_fields(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        shape_of_request(body)


def test_worst_case_uses_max_output_tokens_when_max_tokens_absent() -> None:
    usage = worst_case_usage(RequestShape(prompt_bytes=100, choices=3), GPT4O)
    assert usage.completion_tokens == 16384 * 3
    assert usage.prompt_tokens == 100 + PROMPT_OVERHEAD_TOKENS


def test_search_bound_is_one_per_generation_except_deep_research() -> None:
    assert search_queries_bound_for("openai/gpt-4o-mini") == 1
    assert search_queries_bound_for("perplexity/sonar-deep-research") == 50
    shape = RequestShape(prompt_bytes=10, prompts=2, max_tokens=7, choices=3)
    assert worst_case_usage(shape, GPT4O).search_queries == 6
    assert worst_case_usage(shape, GPT4O, search_queries_bound=50).search_queries == 300


def test_worst_case_output_is_max_tokens_times_choices_times_prompts() -> None:
    shape = RequestShape(prompt_bytes=10, prompts=4, max_tokens=7, choices=3)
    assert worst_case_usage(shape, GPT4O).completion_tokens == 7 * 3 * 4


def test_prompt_bound_capped_by_context_window() -> None:
    shape = RequestShape(prompt_bytes=10_000_000, max_tokens=1)
    assert worst_case_usage(shape, GPT4O).prompt_tokens == 128000


def test_unbounded_request_is_refused() -> None:
    unknown = PriceVersion("x", "y", date(2024, 1, 1), Rates(input=D(1), output=D(1)))
    with pytest.raises(UnboundedRequest, match="max_tokens"):
        reservation_nano(RequestShape(prompt_bytes=10), unknown)
    chat_image = RequestShape(prompt_bytes=10, max_tokens=5, non_text_input=True)
    with pytest.raises(UnboundedRequest, match="context window"):
        reservation_nano(chat_image, unknown)


def test_reservation_of_a_simple_request() -> None:
    # 1000 bytes + overhead at $2.50/M, 100 tokens at $10/M, slack.
    nano = reservation_nano(RequestShape(prompt_bytes=1000, max_tokens=100), GPT4O)
    expected_usd = D(1000 + PROMPT_OVERHEAD_TOKENS) * D("2.50") / 10**6 + D(100) * D(10) / 10**6
    assert nano == int(expected_usd * 10**9) + 16


def test_reservation_of_an_embedding_request() -> None:
    """An embedding model has no output price and no max output tokens: a request shaped
    with max_tokens=0 reserves its input bound only."""
    embedding = PriceVersion(
        "openai", "text-embedding-3-small", date(2024, 1, 1), Rates(input=D("0.02")),
        max_input_tokens=8191, mode="embedding",
    )  # fmt: skip
    shape = RequestShape(prompt_bytes=1000, prompts=2, max_tokens=0)
    usage = worst_case_usage(shape, embedding)
    assert (usage.prompt_tokens, usage.completion_tokens) == (1000 + 2 * PROMPT_OVERHEAD_TOKENS, 0)
    # 2024 tokens × $0.02/M (20 nano-USD a token), plus the slack
    assert reservation_nano(shape, embedding) == 2024 * 20 + 16
    capped = RequestShape(prompt_bytes=10**6, prompts=2, max_tokens=0)
    assert reservation_nano(capped, embedding) == 2 * 8191 * 20 + 16  # the window, per input


def test_reservation_prices_the_prompt_at_the_one_hour_write_rate() -> None:
    shape = RequestShape(prompt_bytes=1000, max_tokens=100)
    prompt = 1000 + PROMPT_OVERHEAD_TOKENS
    assert reservation_nano(shape, CLAUDE) == prompt * 6000 + 100 * 15_000 + 16
    all_1h = normalize_usage(
        {
            "prompt_tokens": prompt,
            "completion_tokens": 100,
            "prompt_tokens_details": {
                "cached_write_tokens": prompt,
                "cached_write_1h_tokens": prompt,
            },
        }
    )
    assert price_usage(all_1h, CLAUDE).total == reservation_nano(shape, CLAUDE) - 16


def test_reservation_reaches_long_context_tier() -> None:
    small = reservation_nano(RequestShape(prompt_bytes=1000, max_tokens=100), TIERED)
    big = reservation_nano(RequestShape(prompt_bytes=300_000, max_tokens=100), TIERED)
    # Above 200k prompt tokens the tier's (higher) output rate applies to the whole request.
    tier_output = 100 * 15_000  # 100 tokens × $15/M in nano
    base_output_reasoning = 100 * 12_000
    assert big - small > tier_output - base_output_reasoning


CACHE_SPLITS = st.integers(min_value=0, max_value=100)


@given(
    prompt_text=st.text(max_size=400),
    prompts=st.integers(min_value=1, max_value=3),
    max_tokens=st.integers(min_value=0, max_value=5000),
    n=st.integers(min_value=1, max_value=4),
    cache_read_pct=CACHE_SPLITS,
    cache_write_pct=CACHE_SPLITS,
    cache_write_1h_pct=CACHE_SPLITS,
    reasoning_pct=CACHE_SPLITS,
    prompt_fill_pct=st.integers(min_value=0, max_value=100),
    output_fill_pct=st.integers(min_value=0, max_value=100),
    searches_per_generation=st.integers(min_value=0, max_value=3),
    citation_pct=st.integers(min_value=0, max_value=100),
    version=st.sampled_from([GPT4O, TIERED, CLAUDE]),
    padding=st.sampled_from([0, 250_000]),  # reaches the long-context tier
)
def test_reservation_bounds_every_bill_that_honours_max_tokens(
    prompt_text: str,
    prompts: int,
    max_tokens: int,
    n: int,
    cache_read_pct: int,
    cache_write_pct: int,
    cache_write_1h_pct: int,
    reasoning_pct: int,
    prompt_fill_pct: int,
    output_fill_pct: int,
    searches_per_generation: int,
    citation_pct: int,
    version: PriceVersion,
    padding: int,
) -> None:
    prompt_text += "x" * padding
    body = {"model": "p/m", "prompt": [prompt_text] * prompts, "max_tokens": max_tokens, "n": n}
    shape = shape_of_request(body)
    bound = reservation_nano(shape, version, search_queries_bound=3)
    # Any real usage: at most one token per prompt byte (+ overhead), ≤ max_tokens per choice,
    # at most the assumed searches per generation.
    worst = worst_case_usage(shape, version, search_queries_bound=3)
    searches = searches_per_generation * n * prompts
    prompt_tokens = worst.prompt_tokens * prompt_fill_pct // 100
    completion = max_tokens * n * prompts * output_fill_pct // 100
    cache_read = prompt_tokens * cache_read_pct // 100
    cache_write = (prompt_tokens - cache_read) * cache_write_pct // 100
    usage = normalize_usage(
        {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "prompt_tokens_details": {
                "cached_read_tokens": cache_read,
                "cached_write_tokens": cache_write,
                "cached_write_1h_tokens": cache_write * cache_write_1h_pct // 100,
            },
            "completion_tokens_details": {
                "reasoning_tokens": completion * reasoning_pct // 100,
                "num_search_queries": searches,
                "citation_tokens": worst.citation * citation_pct // 100,
            },
        }
    )
    assert price_usage(usage, version).total <= bound


def state(limit: int, spent: int, reserved: int, budget_id: int = 1) -> BudgetState:
    return BudgetState(budget_id, "key", 7, limit, spent, reserved)


def test_admits_exactly_up_to_the_limit() -> None:
    assert state(100, 60, 30).admits(10)
    assert not state(100, 60, 30).admits(11)
    assert state(0, 0, 0).admits(0)
    assert not state(0, 0, 0).admits(1)


def test_first_refusal_names_the_refusing_budget() -> None:
    states = [state(100, 0, 0, 1), state(50, 45, 0, 2), state(10, 10, 0, 3)]
    refused = first_refusal(states, 6)
    assert refused is not None
    assert refused.budget_id == 2
    assert first_refusal(states[:1], 100) is None


def test_soft_limit_crossing_is_exact() -> None:
    assert not soft_limit_reached(limit_nano=1000, soft_pct=80, spent_nano=799)
    assert soft_limit_reached(limit_nano=1000, soft_pct=80, spent_nano=800)
    assert not soft_limit_reached(limit_nano=1000, soft_pct=None, spent_nano=10**9)
    assert crosses_soft_limit(limit_nano=1000, soft_pct=80, before_nano=700, after_nano=850)
    assert not crosses_soft_limit(limit_nano=1000, soft_pct=80, before_nano=800, after_nano=850)
    assert not crosses_soft_limit(limit_nano=3, soft_pct=34, before_nano=0, after_nano=1)
    assert crosses_soft_limit(limit_nano=3, soft_pct=33, before_nano=0, after_nano=1)


def test_refusal_message_says_what_to_do() -> None:
    message = refusal_message(
        owner_type="team",
        owner_name="research",
        limit_nano=5 * 10**9,
        spent_nano=4_500_000_000,
        reserved_nano=250_000_000,
        requested_nano=300_000_000,
        next_reset=datetime(2026, 2, 1),
    )
    assert "team budget of team 'research'" in message
    assert "limit $5," in message
    assert "spent $4.5," in message
    assert "$0.25" in message and "$0.3;" in message
    assert "resets at 2026-02-01T00:00:00Z" in message
    never = refusal_message(
        owner_type="key",
        owner_name="k",
        limit_nano=1,
        spent_nano=1,
        reserved_nano=0,
        requested_nano=1,
        next_reset=None,
    )
    assert "never resets" in never
