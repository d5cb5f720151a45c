"""What a request is billed: computed cost, reported cost, cache hits, estimates.

Policy (SPEC §5): the components are always *our* computation from the price
sheet; ``total`` is the billed amount; ``adjustment = total - sum(components)``
carries the difference when the upstream-reported cost wins, so that every
total still adds up to the last nano-dollar. ``policy="computed"`` bills our
computation and keeps the reported figure for ``metering reconcile``.

Bifrost gateway cache: a ``direct`` hit cost the provider nothing (billed 0,
tokens kept); a ``semantic`` hit is billed only what the gateway reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from metering.core.money import reported_to_nano
from metering.core.pricing import CostBreakdown, PriceVersion, price_usage
from metering.core.usage import UsageBuckets

BillingPolicy = Literal["reported", "computed"]
CostSource = Literal["computed", "reported", "estimated", "unpriced"]

_REPORTED_PARTS = (
    "input_tokens_cost",
    "output_tokens_cost",
    "reasoning_tokens_cost",
    "citation_tokens_cost",
    "search_queries_cost",
    "request_cost",
)


@dataclass(frozen=True, slots=True)
class Bill:
    components: CostBreakdown
    computed_total: int | None  # None when no price was known
    reported_total: int | None
    adjustment: int
    cost_source: CostSource
    price_version_id: int | None
    estimated: bool = False  # the usage was an estimate (whatever the price)

    @property
    def total(self) -> int:
        return self.components.total + self.adjustment


def reported_cost_nano(usage: Mapping[str, Any] | None) -> int | None:
    """``usage.cost.total_cost`` (or the sum of its parts) in nano-USD; None if absent."""
    if not isinstance(usage, Mapping):
        return None
    cost = usage.get("cost")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        return reported_to_nano(cost)
    if not isinstance(cost, Mapping):
        return None
    total = reported_to_nano(cost.get("total_cost"))
    if total is not None:
        return total
    parts = [reported_to_nano(cost.get(p)) for p in _REPORTED_PARTS]
    present = [p for p in parts if p is not None]
    return sum(present) if present else None


def bill_request(
    usage: UsageBuckets,
    version: PriceVersion | None,
    *,
    reported_total: int | None = None,
    policy: BillingPolicy = "reported",
    estimated: bool = False,
    cache_hit_type: str | None = None,
) -> Bill:
    version_id = version.id if version is not None else None
    if cache_hit_type is not None:
        hit = cache_hit_type.lower()
        billed = reported_total if hit != "direct" and reported_total is not None else 0
        return Bill(
            components=CostBreakdown(),
            computed_total=0 if version is not None else None,
            reported_total=reported_total,
            adjustment=billed,
            cost_source="reported" if billed else ("computed" if version else "unpriced"),
            price_version_id=version_id,
        )

    computed = price_usage(usage, version) if version is not None else None
    components = computed if computed is not None else CostBreakdown()
    computed_total = computed.total if computed is not None else None

    if estimated:
        source: CostSource = "estimated" if computed is not None else "unpriced"
        return Bill(components, computed_total, reported_total, 0, source, version_id, True)
    if reported_total is not None and (policy == "reported" or computed is None):
        return Bill(
            components,
            computed_total,
            reported_total,
            reported_total - components.total,
            "reported",
            version_id,
        )
    if computed is not None:
        return Bill(components, computed_total, reported_total, 0, "computed", version_id)
    return Bill(components, None, reported_total, 0, "unpriced", None)
