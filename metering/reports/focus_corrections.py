"""FOCUS rows for records ``metering reprice`` changed (README, FOCUS export): per day ×
key × provider × model × first price version, the amount they were first billed (their
earliest ``reprice_audits`` row's old total) as a charge, and its reversal as a
``Correction``. The pair nets to zero; the restated charges are the records' current
rows (``reports.focus``), marked ``Correction`` too."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, and_, func, select

from metering.core.money import nano_to_decimal
from metering.reports.common import DayWindow, Names, as_date, utc_day
from metering.reports.focus import CHUNK_ROWS, FocusRow, Group, Month, base_row
from metering.storage.models import RepriceAudit, UsageRecord


def _originals(conn: Connection, window: DayWindow) -> Iterator[tuple[Group, int, int, int | None]]:
    """Per day × key × provider × model × first old version: what repriced records were
    first billed (their earliest audit's old total)."""
    u, a = UsageRecord, RepriceAudit
    first = select(a.record_id, func.min(a.id).label("audit_id")).group_by(a.record_id).subquery()
    keys: tuple[Any, ...] = (
        utc_day(conn, u.started_at).label("day"),
        u.key_id,
        func.coalesce(u.team_id, 0).label("team_id"),
        func.coalesce(u.customer_id, 0).label("customer_id"),
        u.provider,
        u.model,
        a.old_price_version_id,
    )
    sub = (
        select(*keys, a.old_total_cost)
        .select_from(u)
        .join(first, first.c.record_id == u.id)
        .join(a, and_(a.id == first.c.audit_id))
        .where(*window.where_instant(u.started_at))
        .subquery()
    )
    names = [k.name for k in keys]
    query = (
        select(
            *(sub.c[n] for n in names),
            func.sum(sub.c.old_total_cost).label("old"),
            func.count().label("records"),
        )
        .group_by(*(sub.c[n] for n in names))
        .order_by(*(sub.c[n] for n in names))
    )
    for row in conn.execution_options(yield_per=CHUNK_ROWS).execute(query):
        m = row._mapping
        group = Group(
            day=as_date(m["day"]),
            key_id=int(m["key_id"]),
            team_id=int(m["team_id"]),
            customer_id=int(m["customer_id"]),
            provider=m["provider"],
            model=m["model"],
            version=None,
            level=0,
            cache_hit=False,
            repriced=False,
            sums={},
        )
        version_id = m["old_price_version_id"]
        version = int(version_id) if version_id is not None else None
        yield group, int(m["old"]), int(m["records"]), version


def correction_rows(conn: Connection, window: DayWindow, names: Names) -> Iterator[FocusRow]:
    """The first billed amount of repriced records and its reversal (nets to zero)."""
    month = Month.of(window)
    for group, old, records, version_id in _originals(conn, window):
        if old == 0:
            continue
        base = base_row(group, month, names)
        price = f"price-version-{version_id}" if version_id is not None else "unpriced"
        sku = f"{group.provider}/{group.model}/as-first-billed"
        amount = nano_to_decimal(old)
        common = {
            "ListCost": Decimal(0),
            "ContractedCost": Decimal(0),
            "SkuId": sku,
            "SkuPriceId": f"{sku}@{price}",
        }
        yield {
            **base,
            **common,
            "ChargeCategory": "Usage",
            "ChargeClass": None,
            # a usage charge has a quantity (FOCUS): the records, without a unit price
            "PricingQuantity": Decimal(records),
            "PricingUnit": "Requests",
            "ConsumedQuantity": Decimal(records),
            "ConsumedUnit": "Requests",
            "ChargeDescription": f"as first billed ({price}), before a reprice",
            "BilledCost": amount,
            "EffectiveCost": amount,
        }
        yield {
            **base,
            **common,
            "ChargeCategory": "Adjustment",
            "ChargeClass": "Correction",
            "ChargeDescription": f"reversal of the amount first billed ({price}): repriced",
            "BilledCost": -amount,
            "EffectiveCost": -amount,
        }
