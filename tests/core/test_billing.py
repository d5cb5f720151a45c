"""Billing policy, gateway cache hits, estimates, unpriced models, and attribution."""

from datetime import date
from decimal import Decimal

import pytest

from metering.core.billing import bill_request, reported_cost_nano
from metering.core.pricing import PriceBook, PriceVersion, Rates
from metering.core.responses import bill_response, read_response, served_model, split_model
from metering.core.usage import normalize_usage
from metering.errors import InvalidInput

GPT4O = PriceVersion(
    "openai",
    "gpt-4o",
    date(2024, 1, 1),
    Rates(input=Decimal("2.50"), cache_read=Decimal("1.25"), output=Decimal("10")),
    id=7,
)
USAGE = normalize_usage(
    {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 200},
    }
)


def test_computed_when_nothing_is_reported() -> None:
    bill = bill_request(USAGE, GPT4O)
    assert (bill.total, bill.cost_source, bill.adjustment, bill.price_version_id) == (
        7_250_000,
        "computed",
        0,
        7,
    )


def test_reported_cost_wins_by_default_and_total_still_adds_up() -> None:
    bill = bill_request(USAGE, GPT4O, reported_total=8_000_000)
    assert bill.cost_source == "reported"
    assert bill.total == 8_000_000
    assert bill.computed_total == 7_250_000
    assert bill.components.total + bill.adjustment == bill.total
    assert bill.adjustment == 750_000


def test_computed_policy_keeps_reported_beside() -> None:
    bill = bill_request(USAGE, GPT4O, reported_total=8_000_000, policy="computed")
    assert (bill.total, bill.reported_total, bill.cost_source) == (7_250_000, 8_000_000, "computed")


def test_unpriced_is_never_silently_zero() -> None:
    bill = bill_request(USAGE, None)
    assert (bill.total, bill.cost_source, bill.computed_total, bill.price_version_id) == (
        0,
        "unpriced",
        None,
        None,
    )
    reported = bill_request(USAGE, None, reported_total=5, policy="computed")
    assert (reported.total, reported.cost_source) == (5, "reported")


def test_estimated_stream() -> None:
    bill = bill_request(USAGE, GPT4O, estimated=True, reported_total=1)
    assert (bill.total, bill.cost_source) == (7_250_000, "estimated")
    unpriced = bill_request(USAGE, None, estimated=True)
    assert (unpriced.cost_source, unpriced.estimated) == ("unpriced", True)
    assert bill.estimated and not bill_request(USAGE, GPT4O).estimated


def test_gateway_cache_hits() -> None:
    direct = bill_request(USAGE, GPT4O, reported_total=9, cache_hit_type="direct")
    assert (direct.total, direct.components.total) == (0, 0)
    semantic = bill_request(USAGE, GPT4O, reported_total=123, cache_hit_type="semantic")
    assert (semantic.total, semantic.cost_source) == (123, "reported")
    semantic_unreported = bill_request(USAGE, GPT4O, cache_hit_type="semantic")
    assert semantic_unreported.total == 0


@pytest.mark.parametrize(
    "usage, expected",
    [
        ({"cost": {"total_cost": 0.00725}}, 7_250_000),
        ({"cost": {"input_tokens_cost": 0.002, "output_tokens_cost": 0.005}}, 7_000_000),
        ({"cost": 0.1}, 100_000_000),
        ({"cost": {"total_cost": -1}}, None),
        ({"cost": None}, None),
        ({}, None),
    ],
)
def test_reported_cost_parsing(usage: dict[str, object], expected: int | None) -> None:
    assert reported_cost_nano(usage) == expected


def test_attribution_after_fallback() -> None:
    resp = {
        "model": "claude-sonnet-4-5",
        "extra_fields": {"provider": "anthropic", "model_requested": "gpt-4o"},
    }
    assert served_model(resp, "openai/gpt-4o") == ("anthropic", "claude-sonnet-4-5")
    assert served_model({"model": "openai/gpt-4o"}, "openai/gpt-4o") == ("openai", "gpt-4o")
    assert served_model({}, "openai/gpt-4o") == ("openai", "gpt-4o")
    assert served_model(
        {"extra_fields": {"provider": "azure", "model_deployment": "my-gpt4o"}}, "openai/gpt-4o"
    ) == ("azure", "my-gpt4o")


def test_dated_snapshot_is_priced_as_the_requested_alias() -> None:
    book = PriceBook([GPT4O])
    facts = read_response(
        {
            "model": "gpt-4o-2024-08-06",
            "usage": {
                "prompt_tokens": 1000,
                "completion_tokens": 500,
                "prompt_tokens_details": {"cached_tokens": 200},
            },
        },
        "openai/gpt-4o",
    )
    bill = bill_response(facts, book, requested="openai/gpt-4o", on=date(2026, 1, 1))
    assert (facts.model, bill.total) == ("gpt-4o-2024-08-06", 7_250_000)


def test_cache_debug_is_read() -> None:
    facts = read_response(
        {"extra_fields": {"cache_debug": {"cache_hit": True, "hit_type": "semantic"}}},
        "openai/gpt-4o",
    )
    assert facts.cache_hit_type == "semantic"
    assert (
        read_response({"extra_fields": {"cache_debug": {"cache_hit": False}}}, "o/m").cache_hit_type
        is None
    )


@pytest.mark.parametrize("bad", ["gpt-4o", "/gpt-4o", "openai/", ""])
def test_model_must_be_provider_slash_model(bad: str) -> None:
    with pytest.raises(InvalidInput, match="provider/model"):
        split_model(bad)
