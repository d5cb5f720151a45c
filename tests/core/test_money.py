from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metering.core.money import (
    format_usd,
    parse_usd,
    parse_usd_to_nano,
    reported_to_nano,
    tokens_cost_nano,
    units_cost_nano,
    usd_to_nano,
)
from metering.errors import MoneyError


def test_parse_and_store_exactly() -> None:
    assert parse_usd_to_nano("12.50") == 12_500_000_000
    assert parse_usd_to_nano("0.000000001") == 1
    assert parse_usd(" 3 ") == Decimal(3)


@pytest.mark.parametrize("bad", ["abc", "", "NaN", "Infinity", "-1", "1e"])
def test_parse_rejects_non_money(bad: str) -> None:
    with pytest.raises(MoneyError):
        parse_usd(bad)


def test_parse_rejects_floats() -> None:
    with pytest.raises(MoneyError, match="decimal string"):
        parse_usd(0.1)  # type: ignore[arg-type]


def test_half_even_rounding_is_the_one_rule() -> None:
    assert usd_to_nano(Decimal("0.0000000005")) == 0  # half to even (0)
    assert usd_to_nano(Decimal("0.0000000015")) == 2  # half to even (2)
    assert usd_to_nano(Decimal("0.0000000025")) == 2
    assert usd_to_nano(Decimal("0.00000000251")) == 3


def test_token_costs_are_exact() -> None:
    # 3 tokens at $3 per 1M = $0.000009 exactly
    assert tokens_cost_nano(3, Decimal("3")) == 9_000
    assert tokens_cost_nano(1, Decimal("0.075")) == 75  # 0.075e-6 USD = 75 nano-USD
    # sub-nano results are rounded once, half-even
    assert tokens_cost_nano(1, Decimal("0.0001")) == 0  # 0.1 nano
    assert tokens_cost_nano(5, Decimal("0.0001")) == 0  # 0.5 → 0 (even)
    assert tokens_cost_nano(15, Decimal("0.0001")) == 2  # 1.5 → 2 (even)
    assert tokens_cost_nano(7, Decimal("0.0001")) == 1  # 0.7 → 1
    assert units_cost_nano(1, Decimal("0.005")) == 5_000_000


def test_format_usd() -> None:
    assert format_usd(7_250_000) == "0.00725"
    assert format_usd(0) == "0"
    assert format_usd(12_000_000_000) == "12"
    assert format_usd(-1) == "-0.000000001"
    assert format_usd(1_234_567_891) == "1.234567891"


def test_reported_float_costs_use_their_written_decimal() -> None:
    assert reported_to_nano(0.00725) == 7_250_000
    assert reported_to_nano(0.1) == 100_000_000  # not 0.1000000000000000055…
    assert reported_to_nano(-1.0) is None
    assert reported_to_nano(float("nan")) is None
    assert reported_to_nano("x") is None
    assert reported_to_nano(True) is None


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_format_parse_round_trip(nano: int) -> None:
    assert parse_usd_to_nano(format_usd(nano), allow_negative=True) == nano


@given(
    st.integers(min_value=0, max_value=10**9),
    st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False),
)
def test_token_cost_non_negative_and_monotone(tokens: int, rate: Decimal) -> None:
    cost = tokens_cost_nano(tokens, rate)
    assert cost >= 0
    assert tokens_cost_nano(tokens + 1, rate) >= cost
