"""The largest prices, counts and limits metering admits (pure).

Every amount is stored as a signed 64-bit integer of nano-USD (at most ≈ $9.22e9). The
bounds below are checked where each value enters — price sheets and imports, the
upstream's usage and reported cost, ``budgets set`` — so that no admitted request can
produce a record, a rollup row or a budget counter that overflows (README, Price
sheets). They sit far above any real price (the dearest token rate in LiteLLM's table is
about $600 per 1M tokens, the dearest search query $0.09).
"""

from __future__ import annotations

from decimal import Decimal

from metering.core.money import (
    MAX_REPORTED_USD,
    NANO_PER_USD,
    TOKENS_PER_RATE_UNIT,
    parse_usd,
    usd_to_nano,
)
from metering.core.usage import MAX_SEARCH_QUERIES, MAX_TOKEN_COUNT
from metering.errors import MoneyError

INT64_MAX = 2**63 - 1
MAX_TOKEN_RATE_USD = Decimal(10_000)  # per 1M tokens
MAX_UNIT_PRICE_USD = Decimal(1_000)  # per search query or per request
MAX_LIMIT_USD = Decimal(1_000_000_000)
MAX_LIMIT_NANO = int(MAX_LIMIT_USD) * NANO_PER_USD
REPORTED_PARTS = 6  # core.billing sums at most these parts of a reported cost
# input text/audio/image, cache read, cache write, output/audio, reasoning, citation: the
# two cache write buckets (1-hour and other) hold max(writes, 1-hour part) together, so
# they count as one
TOKEN_BUCKETS = 9
# One record's largest computed amount: every token bucket full at the dearest rate, the
# most search queries at the dearest price, one request.
MAX_COMPUTED_NANO = (
    TOKEN_BUCKETS * MAX_TOKEN_COUNT * int(MAX_TOKEN_RATE_USD) * NANO_PER_USD // TOKENS_PER_RATE_UNIT
    + (MAX_SEARCH_QUERIES + 1) * int(MAX_UNIT_PRICE_USD) * NANO_PER_USD
)
# A reported cost above this is not believed (treated as absent, like a negative one); a
# reported total summed from its parts has at most this many parts.
MAX_REPORTED_NANO = int(MAX_REPORTED_USD) * NANO_PER_USD * REPORTED_PARTS
# A hard budget refuses what could pass its limit, so a counter passes it only by what
# records cost beyond their reservation (an upstream ignoring max_tokens): it takes more
# than OVERSHOOTS such records at once, each the largest possible, to overflow.
OVERSHOOTS = (INT64_MAX - MAX_LIMIT_NANO) // max(MAX_COMPUTED_NANO, MAX_REPORTED_NANO)


def rate_problem(name: str, value: Decimal, *, unit_price: bool) -> str | None:
    """Why a sheet rate cannot be admitted (None if it can)."""
    bound = MAX_UNIT_PRICE_USD if unit_price else MAX_TOKEN_RATE_USD
    if value > bound:
        what = "USD each" if unit_price else "USD per 1M tokens"
        shown = f"{value:f}" if value.adjusted() < 16 else f"{value.normalize():E}"
        return f"{name} = {shown} {what} is above the maximum {bound} {what}"
    return None


def limit_problem(limit_nano: int) -> str | None:
    if limit_nano > MAX_LIMIT_NANO:
        return f"a budget limit is at most {MAX_LIMIT_USD} USD"
    return None


def parse_limit(text: str) -> int:
    """A budget limit typed by a person → nano-USD: a plain decimal (no exponent), no
    finer than the nano-dollar, at most ``MAX_LIMIT_USD``; MoneyError saying why not."""
    amount = parse_usd(text)
    if "e" in text.lower():
        raise MoneyError(f"limit {text!r}: write the amount as a plain decimal (e.g. 1000)")
    nano = usd_to_nano(amount)
    if amount * NANO_PER_USD != nano:
        raise MoneyError(f"limit {text!r} is finer than the nano-dollar (9 decimal places)")
    problem = limit_problem(nano)
    if problem is not None:
        raise MoneyError(f"limit {text!r}: {problem}")
    return nano
