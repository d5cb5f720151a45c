"""Prices, counts and limits are bounded where they enter, so that no admitted request can
overflow a record or a budget counter (signed 64-bit nano-USD)."""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metering.core.billing import bill_request, reported_cost_nano
from metering.core.bounds import (
    INT64_MAX,
    MAX_COMPUTED_NANO,
    MAX_LIMIT_NANO,
    MAX_REPORTED_NANO,
    MAX_TOKEN_RATE_USD,
    MAX_UNIT_PRICE_USD,
    OVERSHOOTS,
    parse_limit,
)
from metering.core.components import RATE_NAMES, UNIT_PRICES
from metering.core.pricing import PriceVersion, Rates, Tier
from metering.core.sheets import parse_litellm_json, parse_toml_sheet
from metering.core.usage import MAX_SEARCH_QUERIES, MAX_TOKEN_COUNT, normalize_usage
from metering.errors import MoneyError, PricingError, SheetError, UsageError


def test_the_bounds_leave_room_in_64_bits() -> None:
    assert MAX_LIMIT_NANO + OVERSHOOTS * max(MAX_COMPUTED_NANO, MAX_REPORTED_NANO) <= INT64_MAX
    assert OVERSHOOTS >= 80  # records at the largest size each, over their reservation


def test_a_rate_above_the_bound_is_refused_where_it_enters() -> None:
    with pytest.raises(PricingError, match="above the maximum 10000 USD per 1M tokens"):
        Rates.from_mapping({"output": "1000000000000000"})
    with pytest.raises(PricingError, match=r"above the maximum|not a decimal"):
        Rates.from_mapping({"input": "1e400"})
    with pytest.raises(PricingError, match="above the maximum 1000 USD each"):
        Rates.from_mapping({"search_query": "5000"})
    sheet = 'provider = "x"\neffective_from = "2026-01-01"\n[models.m]\ninput = "1e400"\n'
    with pytest.raises((PricingError, SheetError), match="above the maximum"):
        parse_toml_sheet(sheet)
    table = ('{"x/ok": {"litellm_provider": "x", "input_cost_per_token": 1e-6}, '
             '"x/dear": {"litellm_provider": "x", "input_cost_per_token": 1e300}}')  # fmt: skip
    report = parse_litellm_json(table, effective_from=date(2026, 1, 1))
    assert [v.model for v in report.versions] == ["ok"]
    assert report.skipped_entries == [
        ("x/dear", "input = 1E+306 USD per 1M tokens is above the maximum 10000 USD per 1M tokens")
    ]


def test_limits_are_plain_bounded_nano_dollar_decimals() -> None:
    assert parse_limit("250") == 250 * 10**9 and parse_limit("0.000000001") == 1
    for bad, why in (("10000000000", "at most"), ("1e3", "plain decimal"),
                     ("0.0000000001", "finer than the nano-dollar")):  # fmt: skip
        with pytest.raises(MoneyError, match=why):
            parse_limit(bad)


def test_implausible_search_queries_and_reported_costs_are_not_believed() -> None:
    details = {"num_search_queries": MAX_SEARCH_QUERIES + 1}
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "completion_tokens_details": details}
    with pytest.raises(UsageError, match="implausible"):
        normalize_usage(usage)
    assert reported_cost_nano({"cost": {"total_cost": 1e12}}) is None
    assert reported_cost_nano({"cost": 1e300}) is None  # no InvalidOperation: billed computed
    assert Rates.from_mapping({"output": "1e16"}, bounded=False).output == Decimal("1e16")
    assert reported_cost_nano({"cost": 2.5}) == 2_500_000_000


token_rate = st.decimals(min_value=0, max_value=MAX_TOKEN_RATE_USD, places=6)
unit_price = st.decimals(min_value=0, max_value=MAX_UNIT_PRICE_USD, places=6)
rates = st.fixed_dictionaries(
    {},
    optional={n: (unit_price if n in UNIT_PRICES else token_rate).map(str) for n in RATE_NAMES},
)
count = st.integers(min_value=0, max_value=MAX_TOKEN_COUNT)
usages = st.fixed_dictionaries(
    {"prompt_tokens": count, "completion_tokens": count},
    optional={
        "prompt_tokens_details": st.fixed_dictionaries({}, optional={
            "cached_read_tokens": count, "cached_write_tokens": count,
            "cached_write_1h_tokens": count,
            "audio_tokens": count, "image_tokens": count}),
        "completion_tokens_details": st.fixed_dictionaries({}, optional={
            "reasoning_tokens": count, "audio_tokens": count, "citation_tokens": count,
            "num_search_queries": st.integers(0, MAX_SEARCH_QUERIES)}),
        "cost": st.decimals(min_value=0, max_value=Decimal(10**8), places=9).map(float),
    },
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(base=rates, tier=rates, usage=usages, spent=st.integers(0, MAX_LIMIT_NANO))
def test_no_admitted_request_overflows_a_record_or_a_counter(
    base: dict[str, str], tier: dict[str, str], usage: dict[str, object], spent: int
) -> None:
    version = PriceVersion(
        "p", "m", date(2026, 1, 1), Rates.from_mapping(base),
        tiers=(Tier(200_000, Rates.from_mapping(tier)),), id=1,
    )  # fmt: skip
    bill = bill_request(normalize_usage(usage), version, reported_total=reported_cost_nano(usage))
    components = [getattr(bill.components, f.name) for f in fields(bill.components)]
    columns = [bill.total, bill.adjustment, bill.computed_total or 0, bill.reported_total or 0]
    assert len(components) >= 8
    for value in [*columns, *components]:
        assert -INT64_MAX <= value <= INT64_MAX
    assert 0 <= bill.total <= max(MAX_COMPUTED_NANO, MAX_REPORTED_NANO)
    assert spent + bill.total <= INT64_MAX  # a counter at the largest limit takes it
