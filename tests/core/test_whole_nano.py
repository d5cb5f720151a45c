"""Pricing (one formula in the package: exact integers where a rate is whole nano-USD a
token, Decimal rounded once per term elsewhere) equals a plain Decimal reference written
here, nano-dollar for nano-dollar; and the component table is what every column list is."""

from dataclasses import fields
from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from metering.core.components import (
    COMPONENT_COLUMNS,
    COMPONENT_TABLE,
    COMPONENTS,
    FALLBACK_CHAINS,
    TOKEN_RATES,
    UNIT_PRICES,
)
from metering.core.money import nano_per_token, nano_per_unit, tokens_cost_nano, units_cost_nano
from metering.core.pricing import (
    CostBreakdown,
    PriceVersion,
    Rates,
    Tier,
    price_usage,
    priced_terms,
)
from metering.core.records import RECORD_FIELDS
from metering.core.usage import MAX_TOKEN_COUNT, UsageBuckets
from metering.storage.models import COST_COLUMNS

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


def reference_price(usage: UsageBuckets, version: PriceVersion, requests: int) -> CostBreakdown:
    """SPEC §5 spelt out in Decimal, rounding each product once: the oracle."""
    r = version.rates_for(usage.prompt_tokens)

    def t(tokens: int, rate: Decimal | None) -> int:
        assert rate is not None
        return tokens_cost_nano(tokens, rate)

    assert r.search_query is not None and r.request is not None
    return CostBreakdown(
        input=t(usage.input_text, r.input) + t(usage.input_audio, r.input_audio)
        + t(usage.input_image, r.input_image),
        cache_read=t(usage.cache_read, r.cache_read),
        cache_write=t(usage.cache_write, r.cache_write)
        + t(usage.cache_write_1h, r.cache_write_1h),
        output=t(usage.output, r.output) + t(usage.output_audio, r.output_audio),
        reasoning=t(usage.reasoning, r.reasoning),
        citation=t(usage.citation, r.citation),
        search=units_cost_nano(usage.search_queries, r.search_query),
        request=units_cost_nano(requests, r.request),
    )  # fmt: skip


@given(usage_st, versions(), st.integers(min_value=0, max_value=3))
def test_price_usage_equals_the_decimal_reference(
    usage: UsageBuckets, version: PriceVersion, requests: int
) -> None:
    priced = price_usage(usage, version, requests=requests)
    assert priced == reference_price(usage, version, requests)
    assert priced.total == sum(priced.as_dict().values())


@given(versions())
def test_a_rate_is_integer_arithmetic_exactly_when_it_is_whole(version: PriceVersion) -> None:
    r = version.rates_for(0)
    plan = [rate for terms in priced_terms(version.rates) for _, rate, _ in terms]
    names = [t.rate for c in COMPONENT_TABLE for t in c.terms]
    assert len(plan) == len(names) == len(TOKEN_RATES) + len(UNIT_PRICES)
    for name, priced in zip(names, plan, strict=True):
        value = getattr(r, name) * (10**9 if name in UNIT_PRICES else 1000)
        whole = value == value.to_integral_value()
        assert isinstance(priced, int) == whole, name
        assert priced == (value if whole else getattr(r, name))


def test_every_cost_column_list_is_the_component_table() -> None:
    assert tuple(f.name for f in fields(CostBreakdown)) == COMPONENTS
    assert (*COMPONENT_COLUMNS, "adjustment_cost", "total_cost") == COST_COLUMNS
    start = RECORD_FIELDS.index("input_cost")
    assert RECORD_FIELDS[start : start + len(COST_COLUMNS)] == COST_COLUMNS
    assert TOKEN_RATES == ("input", "cache_read", "cache_write", "output", "reasoning",
                           "citation", "input_audio", "input_image", "cache_write_1h",
                           "output_audio")  # fmt: skip


def test_fallback_chains_follow_the_table() -> None:
    assert FALLBACK_CHAINS["cache_write_1h"] == ("cache_write_1h", "cache_write", "input")
    assert FALLBACK_CHAINS["reasoning"] == ("reasoning", "output")
    assert FALLBACK_CHAINS["citation"] == ("citation",)


def test_cost_breakdown_total_adds_every_field() -> None:
    parts = CostBreakdown(*(10**i for i in range(len(fields(CostBreakdown)))))
    assert parts.total == 11_111_111
