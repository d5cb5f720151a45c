"""The cost components: the one table that the rate names of price sheets, their
fallbacks, the cost columns of records and rollups, quote rows and pricing itself are
derived from (README, How usage becomes money).

A component is priced from one or more terms; a term is a usage bucket
(``core.usage.UsageBuckets``, or the request itself) times a sheet rate. A rate a sheet
leaves out falls back to another (cache read → input, reasoning → output, …), and that
one to its own fallback (1-hour cache write → cache write → input), or is free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Side = Literal["input", "output", "other"]


@dataclass(frozen=True, slots=True)
class Term:
    bucket: str  # a UsageBuckets field, or "requests" (the request itself)
    rate: str  # the sheet's rate for it (USD per 1M tokens, or USD each for unit prices)
    fallback: str | None = None  # the rate used when the sheet has none; None: free


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    terms: tuple[Term, ...]
    side: Side  # what bounds it in a worst case: the prompt, the completion, or itself
    per_unit: bool = False  # priced per query / request, not per 1M tokens

    @property
    def column(self) -> str:
        """Its nano-USD column on usage records and daily rollups."""
        return f"{self.name}_cost"


COMPONENT_TABLE: tuple[Component, ...] = (
    Component(
        "input",
        (
            Term("input_text", "input"),
            Term("input_audio", "input_audio", "input"),
            Term("input_image", "input_image", "input"),
        ),
        "input",
    ),
    Component("cache_read", (Term("cache_read", "cache_read", "input"),), "input"),
    Component(
        "cache_write",
        (
            Term("cache_write", "cache_write", "input"),
            Term("cache_write_1h", "cache_write_1h", "cache_write"),
        ),
        "input",
    ),
    Component(
        "output",
        (Term("output", "output"), Term("output_audio", "output_audio", "output")),
        "output",
    ),
    Component("reasoning", (Term("reasoning", "reasoning", "output"),), "output"),
    Component("citation", (Term("citation", "citation"),), "other"),
    Component("search", (Term("search_queries", "search_query"),), "other", per_unit=True),
    Component("request", (Term("requests", "request"),), "other", per_unit=True),
)

COMPONENTS = tuple(c.name for c in COMPONENT_TABLE)
COMPONENT_COLUMNS = tuple(c.column for c in COMPONENT_TABLE)
# Per-token rates: each component's own rate first, then the rates of its other terms.
TOKEN_RATES = tuple(c.terms[0].rate for c in COMPONENT_TABLE if not c.per_unit) + tuple(
    t.rate for c in COMPONENT_TABLE if not c.per_unit for t in c.terms[1:]
)
UNIT_PRICES = tuple(t.rate for c in COMPONENT_TABLE if c.per_unit for t in c.terms)
RATE_NAMES = TOKEN_RATES + UNIT_PRICES
FALLBACKS = {t.rate: t.fallback for c in COMPONENT_TABLE for t in c.terms}


def _fallback_chain(rate: str) -> tuple[str, ...]:
    chain = [rate]
    while (fallback := FALLBACKS[chain[-1]]) is not None:
        if fallback in chain:
            raise ValueError(f"the fallbacks of {rate} go round: {' → '.join(chain)}")
        chain.append(fallback)
    return tuple(chain)


# Per rate, the rates a sheet is asked for in turn: its own, its fallback's, theirs, …
FALLBACK_CHAINS = {name: _fallback_chain(name) for name in RATE_NAMES}


def rates_of(side: Side) -> tuple[str, ...]:
    """The rates of the components on one side (e.g. every rate a prompt token may pay)."""
    return tuple(t.rate for c in COMPONENT_TABLE if c.side == side for t in c.terms)


def component_units(usage: object, *, requests: int = 1) -> dict[str, int]:
    """Per component, the units it prices: its buckets' tokens (queries, requests)."""
    return {
        c.name: sum(
            requests if t.bucket == "requests" else getattr(usage, t.bucket) for t in c.terms
        )
        for c in COMPONENT_TABLE
    }
