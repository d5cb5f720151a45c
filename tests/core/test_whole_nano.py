"""The integer fast path of pricing equals the Decimal path, nano-dollar for nano-dollar."""

from dataclasses import fields
from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from metering.core.money import nano_per_token, nano_per_unit, tokens_cost_nano, units_cost_nano
from metering.core.pricing import (
    TOKEN_RATES,
    UNIT_PRICES,
    CostBreakdown,
    PriceVersion,
    Rates,
    Tier,
    price_usage,
    price_usage_decimal,
    whole_nano_rates,
)
from metering.core.usage import MAX_TOKEN_COUNT, UsageBuckets

# Rates as sheets write them: whole nano-USD a token (≤ 3 places per 1M) and finer ones.
rates_st = st.decimals(min_value=0, max_value=1000, places=3) | st.decimals(
    min_value=0, max_value=1000, places=12
)
tokens_st = st.integers(min_value=0, max_value=MAX_TOKEN_COUNT)


@given(tokens_st, rates_st)
def test_nano_per_token_is_the_rounded_cost_when_whole(tokens: int, rate: Decimal) -> None:
    per_token = nano_per_token(rate)
    if per_token is not None:
        assert tokens * per_token == tokens_cost_nano(tokens, rate)
    else:
        assert rate * 1000 != (rate * 1000).to_integral_value()


@given(st.integers(min_value=0, max_value=10_000), rates_st)
def test_nano_per_unit_is_the_rounded_cost_when_whole(units: int, price: Decimal) -> None:
    each = nano_per_unit(price)
    if each is not None:
        assert units * each == units_cost_nano(units, price)


def _rates(draw: st.DrawFn) -> Rates:
    names = [*TOKEN_RATES, *UNIT_PRICES]
    return Rates(**{n: draw(st.none() | rates_st) for n in names})


@st.composite
def versions(draw: st.DrawFn) -> PriceVersion:
    tiers = tuple(
        Tier(above_prompt_tokens=draw(tokens_st), rates=_rates(draw))
        for _ in range(draw(st.integers(0, 2)))
    )
    return PriceVersion("p", "m", date(2026, 1, 1), _rates(draw), tiers=tiers)


usage_st = st.builds(
    UsageBuckets,
    **{f.name: tokens_st for f in fields(UsageBuckets) if f.name != "totals_adjusted"},
)


@given(usage_st, versions(), st.integers(min_value=0, max_value=3))
def test_price_usage_equals_the_decimal_path(
    usage: UsageBuckets, version: PriceVersion, requests: int
) -> None:
    fast = price_usage(usage, version, requests=requests)
    assert fast == price_usage_decimal(usage, version, requests=requests)
    assert fast.total == sum(fast.as_dict().values())


@given(versions())
def test_whole_rates_only_when_every_rate_is_whole(version: PriceVersion) -> None:
    whole = whole_nano_rates(version.rates)
    r = version.rates_for(0)
    every = [getattr(r, n) * 1000 for n in TOKEN_RATES] + [
        getattr(r, n) * 10**9 for n in UNIT_PRICES
    ]
    assert (whole is not None) == all(v == v.to_integral_value() for v in every)


def test_cost_breakdown_total_adds_every_field() -> None:
    parts = CostBreakdown(*(10**i for i in range(len(fields(CostBreakdown)))))
    assert parts.total == 11_111_111
