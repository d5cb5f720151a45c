"""(usage buckets, price version) → cost components in integer nano-USD.

Rates are USD per 1M tokens (per query / per request for the unit prices), as
Decimal. Fallbacks: cache read/write → input, 1-hour cache write → cache write (→
input), reasoning → output, audio and image → their text rate. A sheet with no
citation or search price charges 0 for them (the provider does not bill them).
Long-context tiers: when the prompt exceeds a tier's threshold, the tier's rates apply
to the whole request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from operator import attrgetter
from typing import Any

from metering.core.bounds import rate_problem
from metering.core.components import (
    COMPONENT_TABLE,
    COMPONENTS,
    FALLBACK_CHAINS,
    RATE_NAMES,
    UNIT_PRICES,
)
from metering.core.money import (
    format_rate,
    nano_per_token,
    nano_per_unit,
    tokens_cost_nano,
    units_cost_nano,
)
from metering.core.usage import UsageBuckets
from metering.errors import PricingError


@dataclass(frozen=True, slots=True)
class Rates:
    """Token rates in USD per 1M tokens; ``search_query`` and ``request`` in USD each."""

    input: Decimal | None = None
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
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
    def from_mapping(
        cls, data: Mapping[str, Any], where: str = "", *, bounded: bool = True
    ) -> Rates:
        """Rates from a sheet or import (``bounded``: refused above ``core.bounds``), or
        from the database (``bounded=False``: a price stored before the bounds existed
        still loads, so that ``prices import --replace`` can correct it)."""
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
            problem = rate_problem(name, value, unit_price=name in UNIT_PRICES) if bounded else None
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

    def fields_dropped_by(self, newer: PriceVersion) -> tuple[str, ...]:
        """What this version sets that ``newer`` (which follows or corrects it) does not:
        rates (then priced by their fallback, or 0), tiers, token limits."""
        dropped = [
            name
            for name in RATE_NAMES
            if getattr(self.rates, name) is not None and getattr(newer.rates, name) is None
        ]
        kept = {t.above_prompt_tokens for t in newer.tiers}
        dropped += [
            f"tier above {t.above_prompt_tokens}"
            for t in sorted(self.tiers, key=lambda t: t.above_prompt_tokens)
            if t.above_prompt_tokens not in kept
        ]
        if self.max_input_tokens is not None and newer.max_input_tokens is None:
            dropped.append("max_input_tokens")
        if self.max_output_tokens is not None and newer.max_output_tokens is None:
            dropped.append("max_output_tokens")
        return tuple(dropped)

    def same_prices(self, other: PriceVersion) -> bool:
        return self.rates == other.rates and sorted(
            self.tiers, key=lambda t: t.above_prompt_tokens
        ) == sorted(other.tiers, key=lambda t: t.above_prompt_tokens)


def _with_fallbacks(rates: Rates) -> Rates:
    """Every rate set: a missing one takes the first rate of its fallback chain that the
    sheet sets (``core.components``), or 0."""
    values: dict[str, Decimal] = {}
    for name, chain in FALLBACK_CHAINS.items():
        values[name] = next(
            (v for rate in chain if (v := getattr(rates, rate)) is not None), Decimal(0)
        )
    return Rates(**values)


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """Cost components in nano-USD (``core.components``, in its order), each term rounded
    once; the total is their sum."""

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
        return {name: getattr(self, name) for name in COMPONENTS}


# A term of a component as priced: the bucket's getter (None: the request itself), and the
# rate as whole nano-USD a token (a unit) when it is one — then ``count × it`` is exact and
# equals the rounded Decimal product — else as the Decimal rate, rounded once per term.
PricedTerm = tuple[Callable[[UsageBuckets], int] | None, int | Decimal, bool]


def priced_terms(rates: Rates) -> tuple[tuple[PricedTerm, ...], ...]:
    """The sheet's rates (fallbacks applied) term by term, in ``COMPONENTS`` order."""
    r = _with_fallbacks(rates)
    plan = []
    for component in COMPONENT_TABLE:
        terms = []
        for term in component.terms:
            rate = getattr(r, term.rate)
            whole = nano_per_unit(rate) if component.per_unit else nano_per_token(rate)
            getter = None if term.bucket == "requests" else attrgetter(term.bucket)
            terms.append((getter, rate if whole is None else whole, component.per_unit))
        plan.append(tuple(terms))
    return tuple(plan)


# A pure function of a hashable value, memoised: pricing at rates that are whole nano-USD a
# token (nearly every sheet rate) is then integer arithmetic only.
_priced_terms = functools.lru_cache(maxsize=1024)(priced_terms)


def price_usage(usage: UsageBuckets, version: PriceVersion, *, requests: int = 1) -> CostBreakdown:
    """Price every bucket exactly once with the version's rates (tier chosen by prompt size),
    each term rounded once (half-even)."""
    sheet = version.rates if not version.tiers else version.sheet_rates_for(usage.prompt_tokens)
    amounts = []
    for terms in _priced_terms(sheet):
        amount = 0
        for getter, rate, per_unit in terms:
            count = requests if getter is None else getter(usage)
            if not count:
                continue
            if isinstance(rate, int):
                amount += count * rate
            elif per_unit:
                amount += units_cost_nano(count, rate)
            else:
                amount += tokens_cost_nano(count, rate)
        amounts.append(amount)
    return CostBreakdown(*amounts)


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
