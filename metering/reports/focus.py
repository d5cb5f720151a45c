"""The month's charges as FOCUS 1.0 rows (``metering export --format focus``; README,
FOCUS export).

One row per charge: day × key (team, customer as recorded) × provider × model × price
version (and long-context tier) × token class of a cost component (``core.components``),
plus one ``Adjustment`` row for what the records were billed beyond their components
(an upstream-reported cost that won, a gateway cache hit, an interrupted call's floor).

* Unit prices are per token (the sheet's USD per 1M tokens ÷ 10⁶, exact in decimal) or
  per query / request, so ``ListCost = ListUnitPrice × PricingQuantity`` exactly.
* ``BilledCost`` is the records' stored nano-USD: a component's rows add up to its
  stored sum, and the month's rows to ``metering spend``. A component of several token
  classes (input text/audio/image, 5-minute/1-hour cache writes, output text/audio)
  bills its other classes their list cost rounded once (``core.money``) and its own
  class the rest, which is exact whenever the rate is a whole nano-USD a token.
* Unpriced records (no price version) and gateway cache hits have their quantities
  with no unit price and zero cost; what a cache hit was billed is in the adjustment.
* Records changed by ``metering reprice`` are grouped apart and marked ``Correction``;
  their first billed amount appears as a charge and its reversal (a ``Correction``
  adjustment; ``reports.focus_corrections``), so the month still adds up to what is
  billed now.

Aggregation is in SQL, streamed (``yield_per``): memory is bounded by the chunk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Context, Decimal, Inexact, InvalidOperation
from typing import Any

from sqlalchemy import Connection, case, exists, func, literal, select
from sqlalchemy.sql.elements import ColumnElement

from metering.core.attribution import tags_of
from metering.core.components import COMPONENT_TABLE, Component, Term
from metering.core.money import TOKENS_PER_RATE_UNIT, nano_to_decimal, usd_to_nano
from metering.core.pricing import PriceVersion, Rates
from metering.reports.common import DayWindow, Names, as_date, billable, scope_name, utc_day
from metering.storage.models import RepriceAudit, UsageRecord

CHUNK_ROWS = 5_000
_EXACT = Context(prec=100, traps=[Inexact, InvalidOperation])  # never rounds: raises

# The stored columns of each usage bucket (``core.records.buckets_from_record``), as
# (column, sign) terms; "requests" counts the records that have something to price.
BUCKET_COLUMNS: dict[str, tuple[tuple[str, int], ...]] = {
    "input_text": (("prompt_text_tokens", 1),),
    "input_audio": (("prompt_audio_tokens", 1),),
    "input_image": (("prompt_image_tokens", 1),),
    "cache_read": (("cached_read_tokens", 1),),
    "cache_write": (("cached_write_tokens", 1), ("cached_write_1h_tokens", -1)),
    "cache_write_1h": (("cached_write_1h_tokens", 1),),
    "output": (("completion_text_tokens", 1), ("completion_image_tokens", 1)),
    "output_audio": (("completion_audio_tokens", 1),),
    "reasoning": (("reasoning_tokens", 1),),
    "citation": (("citation_tokens", 1),),
    "search_queries": (("search_queries", 1),),
}
PROMPT_BUCKETS = ("input_text", "input_audio", "input_image", "cache_read", "cache_write")
UNITS = {"search_queries": "Queries", "requests": "Requests"}  # all else: Tokens

FocusRow = dict[str, Any]


def bucket_sql(bucket: str) -> ColumnElement[Any]:
    u = UsageRecord.__table__.c
    if bucket == "requests":
        return case((billable(UsageRecord), 1), else_=0)
    expr: Any = None
    for column, sign in BUCKET_COLUMNS[bucket]:
        part = u[column] if sign > 0 else -u[column]
        expr = part if expr is None else expr + part
    return expr  # type: ignore[no-any-return]


def _thresholds(version: PriceVersion) -> list[int]:
    return sorted(t.above_prompt_tokens for t in version.tiers)


def _tier_sql(versions: dict[int, PriceVersion]) -> ColumnElement[Any]:
    """How many of its version's long-context tiers a record's prompt exceeds."""
    prompt: Any = sum((bucket_sql(b) for b in PROMPT_BUCKETS[1:]), bucket_sql(PROMPT_BUCKETS[0]))
    whens = []
    for vid, version in versions.items():
        if version.tiers:
            levels: Any = sum(
                (case((prompt > t, 1), else_=0) for t in _thresholds(version)), literal(0)
            )
            whens.append((UsageRecord.price_version_id == vid, levels))
    return case(*whens, else_=0) if whens else literal(0)


@dataclass(frozen=True, slots=True)
class Group:
    day: date
    key_id: int
    team_id: int
    customer_id: int
    provider: str
    model: str
    version: PriceVersion | None
    level: int  # tier level of the version
    cache_hit: bool
    repriced: bool
    sums: dict[str, int]
    # attribution (README, Attribution): '' for none
    end_user_scope: str = ""
    end_user: str = ""
    tags: str = ""


def month_groups(
    conn: Connection, window: DayWindow, versions: dict[int, PriceVersion]
) -> Iterator[Group]:
    u = UsageRecord
    repriced = exists().where(RepriceAudit.record_id == u.id)
    keys: list[Any] = [
        utc_day(conn, u.started_at).label("day"),
        u.key_id,
        func.coalesce(u.team_id, 0).label("team_id"),
        func.coalesce(u.customer_id, 0).label("customer_id"),
        u.provider,
        u.model,
        func.coalesce(u.price_version_id, 0).label("version_id"),
        _tier_sql(versions).label("level"),
        case((u.cache_hit, 1), else_=0).label("cache_hit"),
        case((repriced, 1), else_=0).label("repriced"),
        func.coalesce(u.end_user_scope, "").label("end_user_scope"),
        func.coalesce(u.end_user, "").label("end_user"),
        func.coalesce(u.tags, "").label("tags"),
    ]
    buckets = [*BUCKET_COLUMNS, "requests"]
    costs = [*(c.column for c in COMPONENT_TABLE), "adjustment_cost", "total_cost"]
    sub = select(
        *keys,
        *(bucket_sql(b).label(b) for b in buckets),
        *(getattr(u, c).label(c) for c in costs),
    ).where(*window.where_instant(u.started_at))
    s = sub.subquery()
    names = [k.name for k in keys]
    query = (
        select(*(s.c[n] for n in names), *(func.sum(s.c[c]).label(c) for c in buckets + costs))
        .group_by(*(s.c[n] for n in names))
        .order_by(*(s.c[n] for n in names))
    )
    for row in conn.execution_options(yield_per=CHUNK_ROWS).execute(query):
        m = row._mapping
        vid = int(m["version_id"])
        yield Group(
            day=as_date(m["day"]),
            key_id=int(m["key_id"]),
            team_id=int(m["team_id"]),
            customer_id=int(m["customer_id"]),
            provider=m["provider"],
            model=m["model"],
            version=versions.get(vid) if vid else None,
            level=int(m["level"]),
            cache_hit=bool(m["cache_hit"]),
            repriced=bool(m["repriced"]),
            sums={c: int(m[c]) for c in buckets + costs},  # SUM is numeric on PostgreSQL
            end_user_scope=m["end_user_scope"],
            end_user=m["end_user"],
            tags=m["tags"],
        )


def _at(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _exact_product(a: Decimal, b: int) -> Decimal:
    return _EXACT.multiply(a, Decimal(b))


def unit_price(component: Component, term: Term, rates: Rates) -> Decimal:
    """USD a token (the sheet's rate per 1M ÷ 10⁶, exact), or USD each for unit prices."""
    rate: Decimal = getattr(rates, term.rate)
    return rate if component.per_unit else _EXACT.divide(rate, Decimal(TOKENS_PER_RATE_UNIT))


@dataclass(frozen=True, slots=True)
class Month:
    start: date
    end: date  # first day after it

    @classmethod
    def of(cls, window: DayWindow) -> Month:
        assert window.since is not None and window.until is not None
        return cls(window.since, window.until + timedelta(days=1))


def base_row(group: Group, month: Month, names: Names) -> FocusRow:
    key = names.key(group.key_id)
    tags: dict[str, str | None] = {"key": key}
    team, customer = names.team(group.team_id), names.customer(group.customer_id)
    if team is not None:
        tags["team"] = team
    if customer is not None:
        tags["customer"] = customer
    tags |= attribution_tags(group, names)
    return {
        "BillingAccountId": "metering",
        "BillingAccountName": "metering gateway",
        "BillingCurrency": "USD",
        "PricingCurrency": "USD",
        "BillingPeriodStart": _at(month.start),
        "BillingPeriodEnd": _at(month.end),
        "ChargePeriodStart": _at(group.day),
        "ChargePeriodEnd": _at(group.day + timedelta(days=1)),
        "ChargeClass": "Correction" if group.repriced else None,
        "ChargeFrequency": "Usage-Based",
        "ProviderName": group.provider,
        "PublisherName": group.provider,
        "InvoiceIssuerName": group.provider,
        "Provider": group.provider,
        "Publisher": group.provider,
        "InvoiceIssuer": group.provider,
        "ResourceId": f"{group.provider}/{group.model}",
        "ResourceID": f"{group.provider}/{group.model}",
        "ResourceName": group.model,
        "ResourceType": "Model",
        "ServiceCategory": "AI and Machine Learning",
        "ServiceSubcategory": "Generative AI",
        "ServiceName": "LLM API",
        "SubAccountId": f"key-{group.key_id}",
        "SubAccountName": key,
        "Tags": json.dumps(tags, ensure_ascii=False, sort_keys=True),
    }


def attribution_tags(group: Group, names: Names) -> dict[str, str | None]:
    """The group's end user and request tags as FOCUS tags: ``end_user`` (and its scope)
    and ``tag:<key>`` = value for each ``key=value`` tag (null for a bare tag; the values
    of several tags with one key comma-joined, sorted), and ``request_tags``: every tag as
    sent (sorted, comma-joined), which keeps a bare ``feature`` beside ``feature=rag``."""
    out: dict[str, str | None] = {}
    if group.end_user:
        out["end_user"] = group.end_user
        out["end_user_scope"] = scope_name(group.end_user_scope, names)
    if group.tags:
        out["request_tags"] = group.tags
    for tag in tags_of(group.tags):
        name, sep, value = tag.partition("=")
        key = f"tag:{name}"
        if not sep:
            out.setdefault(key, None)
        else:
            before = out.get(key)
            out[key] = value if before is None else f"{before},{value}"
    return out


def _rates(group: Group) -> tuple[Rates | None, str]:
    """The rates the group's records were priced at, and the tier's part of a price id."""
    version = group.version
    if version is None or group.cache_hit:
        return None, ""
    if group.level == 0:
        return version.rates_for(0), ""
    threshold = _thresholds(version)[group.level - 1]
    return version.rates_for(threshold + 1), f"/above-{threshold}"


def group_rows(group: Group, month: Month, names: Names) -> Iterator[FocusRow]:
    """The FOCUS rows of one group: its token classes, then its adjustment."""
    base = base_row(group, month, names)
    rates, tier = _rates(group)
    for component in COMPONENT_TABLE:
        stored = group.sums[component.column]
        rows = []
        for term in component.terms:
            quantity = group.sums[term.bucket]
            unit = unit_price(component, term, rates) if rates is not None else None
            listed = _exact_product(unit, quantity) if unit is not None else Decimal(0)
            rows.append((term, quantity, unit, listed))
        # the other classes billed their list cost rounded once; the component's own the rest
        others = {term.bucket: usd_to_nano(listed) for term, _, _, listed in rows[1:]}
        own = stored - sum(others.values())
        for i, (term, quantity, unit, listed) in enumerate(rows):
            billed = own if i == 0 else others[term.bucket]
            if quantity == 0 and billed == 0:
                continue
            yield _usage_row(base, group, component, term, quantity, unit, listed, billed, tier)
    adjustment = group.sums["adjustment_cost"]
    if adjustment:
        yield {
            **base,
            "ChargeCategory": "Adjustment",
            "ChargeDescription": _adjustment_text(group),
            "BilledCost": nano_to_decimal(adjustment),
            "EffectiveCost": nano_to_decimal(adjustment),
            "ListCost": Decimal(0),
            "ContractedCost": Decimal(0),
            "SkuId": f"{group.provider}/{group.model}/adjustment",
        }


def _usage_row(
    base: FocusRow,
    group: Group,
    component: Component,
    term: Term,
    quantity: int,
    unit: Decimal | None,
    listed: Decimal,
    billed: int,
    tier: str,
) -> FocusRow:
    units = UNITS.get(term.bucket, "Tokens")
    version = group.version
    if unit is None:
        why = "gateway cache hit" if group.cache_hit and version else "unpriced: no price known"
        description = f"{term.bucket} of {group.provider}/{group.model} ({why})"
    else:
        description = f"{term.bucket} of {group.provider}/{group.model}"
    sku = f"{group.provider}/{group.model}/{component.name}"
    return {
        **base,
        "ChargeCategory": "Usage",
        "ChargeDescription": description,
        "BilledCost": nano_to_decimal(billed),
        "EffectiveCost": nano_to_decimal(billed),
        "ListCost": listed,
        "ContractedCost": listed,
        "ListUnitPrice": unit,
        "ContractedUnitPrice": unit,
        "PricingCategory": "Standard" if unit is not None else None,
        "PricingQuantity": Decimal(quantity),
        "PricingUnit": units,
        "ConsumedQuantity": Decimal(quantity),
        "ConsumedUnit": units,
        "SkuId": sku,
        "SkuMeter": term.bucket,
        # never null on a usage row (FOCUS): an unpriced one names that it has no price
        "SkuPriceId": f"{sku}/{term.rate}@{_price_id(version)}{tier}",
    }


def _price_id(version: PriceVersion | None) -> str:
    return f"price-version-{version.id}" if version is not None else "unpriced"


def _adjustment_text(group: Group) -> str:
    if group.cache_hit:
        return "gateway cache hit: billed what the gateway reported"
    if group.version is None:
        return "billed without a price: the upstream-reported cost"
    return "billed minus computed: upstream-reported cost or reserved floor"
