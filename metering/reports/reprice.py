"""``metering reprice``: recompute the cost of stored records with the price versions now
known (a price added for an unpriced model, or a corrected version for a past date).

Policy, the one of ``core.billing`` applied again: components are recomputed from the
record's stored buckets with the version in force at its ``started_at``; a record whose
upstream-reported cost won keeps it as its total (only components and adjustment move);
a record billed by our computation is billed the new computation; estimates stay
estimates; gateway cache hits keep their cache rule; an interrupted call keeps its rule
(``core.interrupted``): one billed the amount reserved for it keeps that amount as its
floor. Failed calls without usage are not touched (they cost nothing whatever the price).

A run is one transaction: records, their daily rollups (old values subtracted, new ones
added with ``add_to_rollup``), one ``reprice_audits`` row per changed record, and the
budget counters of the current periods all change together, or nothing does. A dry run
is the same work rolled back, so it shows exactly what a real run would do.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update

from metering.core.billing import BillingPolicy, bill_request
from metering.core.interrupted import INTERRUPTED, bill_interrupted
from metering.core.money import format_usd
from metering.core.pricing import PriceBook, PriceVersion
from metering.core.records import UsageRow, buckets_from_record, cost_columns
from metering.core.responses import find_price
from metering.errors import InvalidInput
from metering.reports.common import DayWindow, billable
from metering.storage.audit import record_change
from metering.storage.budgets import rebuild_budget_counters
from metering.storage.models import COST_COLUMNS, RepriceAudit, UsageRecord
from metering.storage.prices import load_price_book
from metering.storage.records import add_to_rollup

CHUNK_ROWS = 1_000
# What a reprice may change on a record.
COMPARED = (*COST_COLUMNS, "computed_cost", "cost_source", "price_version_id")


@dataclass
class ModelChange:
    records: int = 0
    old_total: int = 0
    new_total: int = 0


@dataclass
class RepriceResult:
    run_id: str
    dry_run: bool
    examined: int = 0
    changed: int = 0
    newly_priced: int = 0
    by_model: dict[tuple[str, str], ModelChange] = field(default_factory=dict)
    budget_changes: list[str] = field(default_factory=list)

    @property
    def old_total(self) -> int:
        return sum(c.old_total for c in self.by_model.values())

    @property
    def new_total(self) -> int:
        return sum(c.new_total for c in self.by_model.values())


def _version(book: PriceBook, row: UsageRow) -> PriceVersion | None:
    on = row.started_at.date()
    try:
        return find_price(
            book, provider=row.provider, model=row.model, requested=row.requested_model, on=on
        )
    except InvalidInput:  # a requested model not written provider/model: served price only
        return book.lookup(row.provider, row.model, on)


def repriced(book: PriceBook, row: UsageRow) -> UsageRow:
    """The record with the cost columns the prices in ``book`` give it (same billing policy)."""
    if row.status == INTERRUPTED:
        floor = row.total_cost if row.adjustment_cost > 0 else None
        bill = bill_interrupted(buckets_from_record(row), _version(book, row), reserved_nano=floor)
        return row._replace(**cost_columns(bill))
    policy: BillingPolicy = (
        "computed"
        if row.cost_source == "computed" and row.reported_cost is not None
        else "reported"
    )
    bill = bill_request(
        buckets_from_record(row),
        _version(book, row),
        reported_total=row.reported_cost,
        policy=policy,
        estimated=bool(row.usage_estimated) or row.cost_source == "estimated",
        cache_hit_type=(row.cache_hit_type or "direct") if row.cache_hit else None,
    )
    return row._replace(**cost_columns(bill))


def count_candidates(conn: Connection, window: DayWindow) -> int:
    u = UsageRecord
    query = select(func.count()).where(*window.where_instant(u.started_at), billable(u))
    return int(conn.execute(query).scalar_one())


def _apply(
    conn: Connection,
    changes: list[tuple[int, UsageRow, UsageRow]],
    run_id: str,
    now: datetime,
) -> None:
    u = UsageRecord
    conn.execute(
        update(u)
        .where(u.id == bindparam("record_id"))
        .values({c: bindparam(f"new_{c}") for c in COMPARED}),
        [
            {"record_id": record_id, **{f"new_{c}": getattr(new, c) for c in COMPARED}}
            for record_id, _, new in changes
        ],
    )
    add_to_rollup(conn, [old for _, old, _ in changes], sign=-1)
    add_to_rollup(conn, [new for _, _, new in changes], sign=1)
    conn.execute(
        insert(RepriceAudit),
        [
            {
                "run_id": run_id,
                "record_id": record_id,
                "old_total_cost": old.total_cost,
                "new_total_cost": new.total_cost,
                "old_price_version_id": old.price_version_id,
                "new_price_version_id": new.price_version_id,
                "old_cost_source": old.cost_source,
                "new_cost_source": new.cost_source,
                "changed_at": now,
            }
            for record_id, old, new in changes
        ],
    )


def _reprice_in(
    conn: Connection,
    result: RepriceResult,
    *,
    window: DayWindow,
    now: datetime,
    progress: Callable[[int], None] | None,
) -> None:
    book = load_price_book(conn)
    u = UsageRecord
    last_id = 0
    while True:
        rows = conn.execute(
            select(u)
            .where(*window.where_instant(u.started_at), billable(u), u.id > last_id)
            .order_by(u.id)
            .limit(CHUNK_ROWS)
        ).all()
        if not rows:
            break
        changes = []
        for row in rows:
            old = UsageRow.from_mapping(row._mapping)
            new = repriced(book, old)
            if any(getattr(old, c) != getattr(new, c) for c in COMPARED):
                changes.append((int(row._mapping["id"]), old, new))
                change = result.by_model.setdefault((old.provider, old.model), ModelChange())
                change.records += 1
                change.old_total += old.total_cost
                change.new_total += new.total_cost
                if old.cost_source == "unpriced" and new.cost_source != "unpriced":
                    result.newly_priced += 1
        if changes:
            _apply(conn, changes, result.run_id, now)
        result.examined += len(rows)
        result.changed += len(changes)
        last_id = rows[-1]._mapping["id"]
        if progress is not None:
            progress(len(rows))
    if result.changed:
        # spent of each budget's current period = its records: recomputed after the change
        result.budget_changes = rebuild_budget_counters(conn, now=now)


def reprice(
    engine: Engine,
    *,
    window: DayWindow,
    now: datetime,
    dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
    actor: str | None = None,
) -> RepriceResult:
    """Reprice the records in ``window`` in one transaction (rolled back when ``dry_run``);
    with ``actor``, one audit row of the run in it (its per-record rows are the
    ``reprice_audits``)."""
    result = RepriceResult(run_id=uuid.uuid4().hex, dry_run=dry_run)
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            _reprice_in(conn, result, window=window, now=now, progress=progress)
            if actor is not None and result.changed:
                record_change(
                    conn,
                    actor=actor,
                    action="records.reprice",
                    target=f"records:{window.since or '…'}..{window.until or '…'}",
                    before={"records": result.changed, "total_cost": format_usd(result.old_total)},
                    after={
                        "records": result.changed,
                        "total_cost": format_usd(result.new_total),
                        "run_id": result.run_id,
                        "newly_priced": result.newly_priced,
                    },
                )
        except BaseException:
            transaction.rollback()
            raise
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    return result
