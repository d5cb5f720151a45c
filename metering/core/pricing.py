"""(usage buckets, price version) → cost components in integer nano-USD.

Rates are USD per 1M tokens (per query / per request for the unit prices), as
Decimal. Fallbacks: cache read/write → input, reasoning → output, audio and
image → their text rate. A sheet with no citation or search price charges 0
for them (the provider does not bill them). Long-context tiers: when the
prompt exceeds a tier's threshold, the tier's rates apply to the whole request.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date
from decimal import Decimal
from typing import Any

from metering.core.bounds import rate_problem
from metering.core.money import (
    format_rate,
    nano_per_token,
    nano_per_unit,
    tokens_cost_nano,
    units_cost_nano,
)
from metering.core.usage import UsageBuckets
from metering.errors import PricingError

TOKEN_RATES = (
    "input",
    "cache_read",
    "cache_write",
    "output",
    "reasoning",
    "citation",
    "input_audio",
    "input_image",
    "output_audio",
)
UNIT_PRICES = ("search_query", "request")
RATE_NAMES = TOKEN_RATES + UNIT_PRICES
COMPONENTS = (
    "input",
    "cache_read",
    "cache_write",
    "output",
    "reasoning",
    "citation",
    "search",
    "request",
)


@dataclass(frozen=True, slots=True)
class Rates:
    """Token rates in USD per 1M tokens; ``search_query`` and ``request`` in USD each."""

    input: Decimal | None = None
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    output: Decimal | None = None
    reasoning: Decimal | None = None
    citation: Decimal | None = None
    input_audio: Decimal | None = None
    input_image: Decimal | None = None
    output_audio: Decimal | None = None
    search_query: Decimal | None = None
    request: Decimal | None = None

    def overlaid(self, other: Rates) -> Rates:
        """These rates with every rate that ``other`` sets replaced."""
        changes = {n: getattr(other, n) for n in RATE_NAMES if getattr(other, n) is not None}
        return replace(self, **changes)

    def as_strings(self) -> dict[str, str]:
        return {n: format_rate(v) for n in RATE_NAMES if (v := getattr(self, n)) is not None}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "") -> Rates:
        unknown = set(data) - set(RATE_NAMES)
        if unknown:
            raise PricingError(f"{where}unknown price field(s): {', '.join(sorted(unknown))}")
        values: dict[str, Decimal] = {}
        for name, raw in data.items():
            if raw is None:
                continue
            if isinstance(raw, (bool, float)):
                raise PricingError(f"{where}{name} must be a decimal string, got {raw!r}")
            try:
                value = Decimal(str(raw))
            except ArithmeticError:
                raise PricingError(f"{where}{name}={raw!r} is not a decimal number") from None
            if not value.is_finite() or value < 0:
                raise PricingError(f"{where}{name}={raw!r} must be a non-negative number")
            problem = rate_problem(name, value, unit_price=name in UNIT_PRICES)
            if problem is not None:
                raise PricingError(f"{where}{problem}")
            values[name] = value
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Tier:
    above_prompt_tokens: int
    rates: Rates


@dataclass(frozen=True, slots=True)
class PriceVersion:
    provider: str
    model: str
    effective_from: date
    rates: Rates
    tiers: tuple[Tier, ...] = ()
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    mode: str = "chat"
    source: str = ""
    id: int | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.model}"

    def rates_for(self, prompt_tokens: int) -> Rates:
        """The rates in force for a request of this prompt size, fallbacks applied."""
        return _with_fallbacks(self.sheet_rates_for(prompt_tokens))

    def sheet_rates_for(self, prompt_tokens: int) -> Rates:
        """The rates in force for a request of this prompt size, as the sheet gives them."""
        rates = self.rates
        for tier in sorted(self.tiers, key=lambda t: t.above_prompt_tokens):
            if prompt_tokens > tier.above_prompt_tokens:
                rates = rates.overlaid(tier.rates)
        return rates

    def same_prices(self, other: PriceVersion) -> bool:
        return self.rates == other.rates and sorted(
            self.tiers, key=lambda t: t.above_prompt_tokens
        ) == sorted(other.tiers, key=lambda t: t.above_prompt_tokens)


def _with_fallbacks(rates: Rates) -> Rates:
    zero = Decimal(0)
    inp = rates.input if rates.input is not None else zero
    out = rates.output if rates.output is not None else zero
    return Rates(
        input=inp,
        cache_read=rates.cache_read if rates.cache_read is not None else inp,
        cache_write=rates.cache_write if rates.cache_write is not None else inp,
        output=out,
        reasoning=rates.reasoning if rates.reasoning is not None else out,
        citation=rates.citation if rates.citation is not None else zero,
        input_audio=rates.input_audio if rates.input_audio is not None else inp,
        input_image=rates.input_image if rates.input_image is not None else inp,
        output_audio=rates.output_audio if rates.output_audio is not None else out,
        search_query=rates.search_query if rates.search_query is not None else zero,
        request=rates.request if rates.request is not None else zero,
    )


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """Cost components in nano-USD, each rounded once; the total is their sum."""

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0
    citation: int = 0
    search: int = 0
    request: int = 0

    @property
    def total(self) -> int:
        return (  # every field, spelt out: this runs for every record
            self.input
            + self.cache_read
            + self.cache_write
            + self.output
            + self.reasoning
            + self.citation
            + self.search
            + self.request
        )

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class WholeNanoRates:
    """Rates (fallbacks applied) that are whole nano-USD a token (a query, a request)."""

    input: int
    cache_read: int
    cache_write: int
    output: int
    reasoning: int
    citation: int
    input_audio: int
    input_image: int
    output_audio: int
    search_query: int
    request: int


def whole_nano_rates(rates: Rates) -> WholeNanoRates | None:
    """A sheet's rates in whole nano-USD (fallbacks applied), or None when one is fractional."""
    r = _with_fallbacks(rates)
    values = [nano_per_token(getattr(r, n)) for n in TOKEN_RATES]
    values += [nano_per_unit(getattr(r, n)) for n in UNIT_PRICES]
    whole = [v for v in values if v is not None]
    return WholeNanoRates(*whole) if len(whole) == len(values) else None


# A pure function of a hashable value: memoised so that pricing a request at a rate that
# is whole nano-USD a token (nearly every sheet rate) is integer arithmetic only.
_whole_nano_rates = functools.lru_cache(maxsize=1024)(whole_nano_rates)


def price_usage_whole(
    usage: UsageBuckets, r: WholeNanoRates, *, requests: int = 1
) -> CostBreakdown:
    """``price_usage`` for whole nano-USD rates: exact integer products, nothing to round."""
    return CostBreakdown(
        input=usage.input_text * r.input
        + usage.input_audio * r.input_audio
        + usage.input_image * r.input_image,
        cache_read=usage.cache_read * r.cache_read,
        cache_write=usage.cache_write * r.cache_write,
        output=usage.output * r.output + usage.output_audio * r.output_audio,
        reasoning=usage.reasoning * r.reasoning,
        citation=usage.citation * r.citation,
        search=usage.search_queries * r.search_query,
        request=requests * r.request,
    )


def price_usage(usage: UsageBuckets, version: PriceVersion, *, requests: int = 1) -> CostBreakdown:
    """Price every bucket exactly once with the version's rates (tier chosen by prompt size)."""
    sheet = version.rates if not version.tiers else version.sheet_rates_for(usage.prompt_tokens)
    whole = _whole_nano_rates(sheet)
    if whole is not None:
        return price_usage_whole(usage, whole, requests=requests)
    return price_usage_decimal(usage, version, requests=requests)


def price_usage_decimal(
    usage: UsageBuckets, version: PriceVersion, *, requests: int = 1
) -> CostBreakdown:
    """``price_usage`` in Decimal arithmetic, rounding each product once (any rate)."""
    r = version.rates_for(usage.prompt_tokens)
    assert r.input is not None and r.output is not None  # _with_fallbacks fills every rate
    assert r.cache_read is not None and r.cache_write is not None and r.reasoning is not None
    assert r.citation is not None and r.input_audio is not None and r.input_image is not None
    assert r.output_audio is not None and r.search_query is not None and r.request is not None
    return CostBreakdown(
        input=tokens_cost_nano(usage.input_text, r.input)
        + tokens_cost_nano(usage.input_audio, r.input_audio)
        + tokens_cost_nano(usage.input_image, r.input_image),
        cache_read=tokens_cost_nano(usage.cache_read, r.cache_read),
        cache_write=tokens_cost_nano(usage.cache_write, r.cache_write),
        output=tokens_cost_nano(usage.output, r.output)
        + tokens_cost_nano(usage.output_audio, r.output_audio),
        reasoning=tokens_cost_nano(usage.reasoning, r.reasoning),
        citation=tokens_cost_nano(usage.citation, r.citation),
        search=units_cost_nano(usage.search_queries, r.search_query),
        request=units_cost_nano(requests, r.request),
    )


def version_in_force(versions: Iterable[PriceVersion], on: date) -> PriceVersion | None:
    """The version with the latest ``effective_from`` not after ``on``."""
    best: PriceVersion | None = None
    for v in versions:
        if v.effective_from <= on and (best is None or v.effective_from > best.effective_from):
            best = v
    return best


class PriceBook:
    """All price versions, indexed by ``provider/model``; answers 'what price on that day'."""

    def __init__(self, versions: Iterable[PriceVersion]) -> None:
        self._by_key: dict[str, list[PriceVersion]] = {}
        for v in versions:
            self._by_key.setdefault(v.key, []).append(v)
        for lst in self._by_key.values():
            lst.sort(key=lambda v: v.effective_from)

    def __len__(self) -> int:
        return len(self._by_key)

    def models(self) -> list[str]:
        return sorted(self._by_key)

    def versions(self, provider: str, model: str) -> Sequence[PriceVersion]:
        return self._by_key.get(f"{provider}/{model}", [])

    def lookup(self, provider: str, model: str, on: date) -> PriceVersion | None:
        return version_in_force(self.versions(provider, model), on)
