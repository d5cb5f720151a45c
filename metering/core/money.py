"""Money: Decimal in, integer nano-USD stored, decimal strings out.

One rounding rule (half-even, once per component) lives here and nowhere else.
No float ever touches an amount: JSON floats reported by providers are turned
into Decimal through their shortest decimal representation (``str``), which is
the number the provider wrote.
"""

from __future__ import annotations

import decimal
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from metering.errors import MoneyError

NANO_PER_USD = 1_000_000_000
# A reported cost above this is not believed (core.bounds: no record may overflow).
MAX_REPORTED_USD = Decimal(10_000_000)
TOKENS_PER_RATE_UNIT = 1_000_000  # sheet rates are USD per 1M tokens

# Enough digits that no product of a rate and a token count is ever rounded
# before the one rounding below.
_CONTEXT = decimal.Context(prec=60, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])


def parse_usd(value: str | int | Decimal, *, allow_negative: bool = False) -> Decimal:
    """Parse a decimal USD amount given as text, int or Decimal (never a float)."""
    if isinstance(value, (bool, float)):
        raise MoneyError(f"amount {value!r} must be a decimal string, not a {type(value).__name__}")
    try:
        amount = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise MoneyError(f"amount {value!r} is not a decimal number (e.g. '12.50')") from None
    if not amount.is_finite():
        raise MoneyError(f"amount {value!r} is not a finite number")
    if amount < 0 and not allow_negative:
        raise MoneyError(f"amount {value!r} is negative")
    return amount


def usd_to_nano(amount: Decimal) -> int:
    """USD (exact Decimal) → integer nano-USD, rounded half-even. The only rounding."""
    scaled = _CONTEXT.multiply(amount, Decimal(NANO_PER_USD))
    return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=_CONTEXT))


def parse_usd_to_nano(value: str | int | Decimal, *, allow_negative: bool = False) -> int:
    return usd_to_nano(parse_usd(value, allow_negative=allow_negative))


def reported_to_nano(value: object) -> int | None:
    """A provider-reported cost (JSON number, usually a float) → nano-USD, or None if unusable.

    ``str`` of a float is its shortest round-tripping decimal, i.e. what the
    provider wrote; the value is never used in float arithmetic.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal | str):
        text = str(value)
    elif isinstance(value, float):
        text = repr(value)
    else:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    if not amount.is_finite() or amount < 0 or amount > MAX_REPORTED_USD:
        return None  # not believed: billed from our own computation
    return usd_to_nano(amount)


def tokens_cost_nano(tokens: int, rate_per_million: Decimal) -> int:
    """Cost of ``tokens`` at a USD-per-1M-tokens rate, in nano-USD (rounded once)."""
    if tokens == 0 or rate_per_million == 0:
        return 0
    # tokens × rate / 1e6 USD  ==  tokens × rate × 1e3 nano-USD, exactly.
    exact = _CONTEXT.multiply(Decimal(tokens), rate_per_million)
    return usd_to_nano(_CONTEXT.divide(exact, Decimal(TOKENS_PER_RATE_UNIT)))


def units_cost_nano(units: int, price_each: Decimal) -> int:
    """Cost of ``units`` (queries, requests) at a USD price each, in nano-USD."""
    if units == 0 or price_each == 0:
        return 0
    return usd_to_nano(_CONTEXT.multiply(Decimal(units), price_each))


def _whole(scaled: Decimal) -> int | None:
    return int(scaled) if scaled == scaled.to_integral_value(context=_CONTEXT) else None


def nano_per_token(rate_per_million: Decimal) -> int | None:
    """A USD-per-1M-tokens rate in nano-USD a token, when that is a whole number, else None.

    Then ``tokens × it`` equals ``tokens_cost_nano(tokens, rate)`` exactly: the product is
    already an integer, and rounding an integer half-even leaves it unchanged.
    """
    return _whole(
        _CONTEXT.multiply(rate_per_million, Decimal(NANO_PER_USD // TOKENS_PER_RATE_UNIT))
    )


def nano_per_unit(price_each: Decimal) -> int | None:
    """A USD price each in nano-USD, when whole (then ``units × it == units_cost_nano``)."""
    return _whole(_CONTEXT.multiply(price_each, Decimal(NANO_PER_USD)))


def nano_to_decimal(nano: int) -> Decimal:
    return _CONTEXT.divide(Decimal(nano), Decimal(NANO_PER_USD))


def format_usd(nano: int) -> str:
    """Integer nano-USD → plain decimal string without exponent or trailing zeros."""
    sign = "-" if nano < 0 else ""
    whole, frac = divmod(abs(nano), NANO_PER_USD)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:09d}".rstrip("0")


def format_rate(rate: Decimal) -> str:
    """A Decimal price as a plain string (no exponent, no trailing zeros)."""
    text = format(rate.normalize(), "f")
    return text
