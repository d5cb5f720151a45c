"""Reserve and settle for many requests in ONE transaction (the gateway's single writer).

Same rules as ``storage.reservations`` (reserve → settle), batched so that concurrent
requests share one transaction and one lock of their budgets:

``reserve_many``
    locks every budget of the batch's owners (one ``SELECT … ORDER BY id FOR UPDATE``;
    SQLite: the transaction is a write transaction from its first statement), gives
    back their expired reservations, rolls them into the current window, then decides
    the requests one after the other against the counters in memory — each sees
    what the ones before it reserved, exactly as if they had run one by one — so every
    reservation is still checked against ``spent + reserved + amount ≤ limit`` under
    the lock. Rate windows are counted in the same transaction, after the budgets
    (the recorder locks them in the same order).
``BatchSettlement``
    the recorder's side: ``lock`` (before the records are inserted: budgets of the
    batch's owners and those holding their reservations, in id order, rolled forward),
    ``finish`` (after: settlement markers, the reservations dropped by one
    ``DELETE … RETURNING``, each record's cost added to every applicable budget whose
    window contains its ``started_at``, counters saved once per budget).
    ``reservations.settle`` runs it for one record already inserted (``from_locked``).

The statements are built from SQLAlchemy Core once per dialect and run on the DBAPI
cursor (``storage.compiled``): Core's per-execute work cost more CPU than running them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from metering.core.attribution import NO_ATTRIBUTION, Attribution
from metering.core.budget import BudgetState, first_refusal
from metering.errors import Conflict
from metering.storage.alerts import alerted_budgets, note_crossings
from metering.storage.budget_locks import (
    Charged,
    Owners,
    applicable,
    charged_rows,
    lock_budget_rows,
    lock_owner_budgets,
    lock_records_budgets,
    lock_records_with_alerts,
    owners_of,
    served,
)
from metering.storage.budget_results import Refusal, ReserveResult, SettleResult
from metering.storage.budget_rows import (
    BudgetRow,
    note_soft_limit,
    roll_forward,
)
from metering.storage.budget_scopes import (
    attribution_of,
    budget_names,
    create_from_defaults,
)
from metering.storage.budget_statements import (
    DROP_HELD,
    MARK_SETTLED,
    RELEASE_EXPIRED,
    RESERVE,
    SAVE,
    TAKEN,
)
from metering.storage.raw_sql import is_postgres, run

__all__ = [
    "BatchSettlement",
    "Charged",
    "Owners",
    "ReserveAsk",
    "Unbounded",
    "applicable",
    "lock_owner_budgets",
    "lock_records_budgets",
    "reserve_many",
    "served",
]


@dataclass(frozen=True, slots=True)
class ReserveAsk:
    """One request's reservation: ``amount_nano`` None = the request cannot be bounded
    (unpriced model): accepted only if no budget applies, else ``unbounded`` is set.
    ``models``: every ``provider/model`` it may be served by (model, then fallbacks): a
    budget narrowed to a model pattern applies if it covers one of them."""

    request_id: str
    owners: Owners
    amount_nano: int | None
    created_at: datetime
    models: tuple[str, ...]
    attribution: Attribution = NO_ATTRIBUTION  # its end user and tags


@dataclass(frozen=True, slots=True)
class Unbounded:
    """A budget applies to a request whose cost cannot be bounded."""

    budget_id: int


def save_rows(conn: Connection, rows: Sequence[BudgetRow], *, now: datetime) -> None:
    for r in rows:
        values = {
            "new_period_start": r.period_start,
            "new_spent_nano": r.spent_nano,
            "new_reserved_nano": r.reserved_nano,
            "new_soft_crossed_at": r.soft_crossed_at,
            "new_updated_at": now,
            "budget_id": r.id,
        }
        SAVE.run(conn, values)


def prepare_rows(conn: Connection, rows: Mapping[int, BudgetRow], *, now: datetime) -> None:
    """Give back the expired reservations of these locked rows; roll them forward."""
    if any(row.reserved_nano for row in rows.values()):  # else nothing can have expired
        ids = sorted(rows)
        expired = RELEASE_EXPIRED.run(conn, {"ids": ids, "now": now})
        for budget_id, amount in expired:
            rows[int(budget_id)].reserved_nano -= int(amount)
    for row in rows.values():
        roll_forward(conn, row, now=now)


def reserve_many(
    conn: Connection,
    asks: Sequence[ReserveAsk],
    *,
    now: datetime,
    ttl_seconds: int,
    locked: dict[int, BudgetRow] | None = None,
    refused_already: Sequence[Exception | None] | None = None,
) -> list[ReserveResult | Unbounded | Exception]:
    """Decide every ask (in order) in the caller's transaction; commit right after.

    ``locked``: the asks' budgets as ``lock_owner_budgets`` locked them, when the caller
    had to lock them first (the gateway then counts rate windows, which lock after the
    budgets); ``refused_already``: one exception or None per ask — an ask refused already (e.g.
    429) is not reserved."""
    if locked is not None:
        rows = locked
    else:
        owners, attributions = [a.owners for a in asks], [a.attribution for a in asks]
        rows = lock_owner_budgets(conn, owners, attributions=attributions)
    skip = refused_already if refused_already is not None else [None] * len(asks)
    if not rows:
        return [
            s if s is not None else ReserveResult(True, a.amount_nano or 0, ())
            for a, s in zip(asks, skip, strict=True)
        ]
    prepare_rows(conn, rows, now=now)
    if any(a.attribution.end_user is not None for a in asks):
        wanting = [(a.attribution, a.models) for a, s in zip(asks, skip, strict=True) if s is None]
        create_from_defaults(conn, rows, wanting, now=now)
    asked = [a.request_id for a in asks]
    taken = {r[0] for r in TAKEN.run(conn, {"ids": asked})}
    results: list[ReserveResult | Unbounded | Exception] = []
    inserts: list[tuple[Any, ...]] = []
    refused: list[tuple[int, BudgetRow, int]] = []
    for index, (ask, skipped) in enumerate(zip(asks, skip, strict=True)):
        mine = applicable(rows, ask.owners, models=ask.models, attribution=ask.attribution)
        if skipped is not None:
            results.append(skipped)
            continue
        if not mine:
            results.append(ReserveResult(True, ask.amount_nano or 0, ()))
            continue
        if ask.amount_nano is None:
            results.append(Unbounded(mine[0].id))
            continue
        if ask.request_id in taken:
            results.append(Conflict(f"request {ask.request_id!r} already holds a reservation"))
            continue
        states = [
            BudgetState(r.id, r.owner_type, r.owner_id, r.limit_nano, r.spent_nano, r.reserved_nano)
            for r in mine
        ]
        refusing = first_refusal(states, ask.amount_nano)
        if refusing is not None:
            row = rows[refusing.budget_id]
            refused.append((index, row, row.reserved_nano))
            results.append(ReserveResult(False, ask.amount_nano, ()))
            continue
        expires = ask.created_at + timedelta(seconds=ttl_seconds)
        for row in mine:
            row.reserved_nano += ask.amount_nano
            inserts.append((ask.request_id, row.id, ask.amount_nano, ask.created_at, expires))
        taken.add(ask.request_id)
        results.append(ReserveResult(True, ask.amount_nano, tuple(r.id for r in mine)))
    if inserts:
        sql = RESERVE.text(is_postgres(conn), rows=len(inserts))  # RESERVATION_COLUMNS
        run(conn, sql, [v for row in inserts for v in row])
    save_rows(conn, list(rows.values()), now=now)
    if refused:
        names = budget_names(conn, [r for _, r, _ in refused])
        for index, row, reserved in refused:
            amount = asks[index].amount_nano or 0
            refusal = Refusal(
                budget_id=row.id,
                owner_type=row.owner_type,
                owner_id=row.owner_id,
                owner_name=names[row.id][0],
                scope_name=names[row.id][1],
                limit_nano=row.limit_nano,
                spent_nano=row.spent_nano,
                reserved_nano=reserved,
                requested_nano=amount,
                next_reset=row.window[1],
                model_pattern=row.model_pattern,
            )
            results[index] = ReserveResult(False, amount, (), refusal)
    return results


@dataclass(slots=True)
class BatchSettlement:
    """The budgets of one recorder batch: locked before its records are inserted,
    charged after (``add`` per inserted record, then ``finish`` once)."""

    rows: dict[int, BudgetRow]
    now: datetime
    rolled: list[BudgetRow]  # moved to a new window by ``lock``: saved by ``finish``
    alerted: frozenset[int]  # budgets with an alert: ``finish`` notes crossed thresholds
    opening: dict[int, int]  # spent of each row before this settlement charged it
    records: list[Charged] = field(default_factory=list)
    adjusted: dict[int, BudgetRow] = field(default_factory=dict)  # by ``adjust``

    @classmethod
    def lock(
        cls, conn: Connection, records: Sequence[Charged], *, now: datetime
    ) -> BatchSettlement:
        """Lock before the records are inserted (a new window's spend is counted from
        the records without them)."""
        rows, alerted = lock_records_with_alerts(conn, records)
        return cls.from_locked(conn, rows, now=now, alerted=alerted)

    @classmethod
    def from_locked(
        cls,
        conn: Connection,
        rows: dict[int, BudgetRow],
        *,
        now: datetime,
        inserted: str | None = None,
        alerted: frozenset[int] | None = None,
    ) -> BatchSettlement:
        """The settlement of these locked rows (``lock_records_budgets``), each rolled
        into its current window. ``inserted``: the request whose record this transaction
        already inserted — left out of a new window's spend, ``finish`` adds it.
        ``alerted``: those of them with an alert (None: looked up)."""
        moved = [
            row
            for row in rows.values()
            if roll_forward(conn, row, now=now, exclude_request_id=inserted)
        ]
        if alerted is None:
            alerted = alerted_budgets(conn, rows)
        opening = {budget_id: row.spent_nano for budget_id, row in rows.items()}
        return cls(rows, now, moved, alerted, opening)

    def add(self, record: Charged) -> None:
        self.records.append(record)

    def adjust(self, record: Charged, delta_nano: int) -> None:
        """A record settled before whose cost changed by ``delta_nano`` (an ``interrupted``
        estimate replaced by the real record): charged to the budgets whose window holds
        its ``started_at``, as its cost was. Saved by ``finish``."""
        for row in charged_rows(self.rows, record):
            start, end = row.window
            if start <= record.started_at and (end is None or record.started_at < end):
                row.spent_nano += delta_nano
                self.adjusted[row.id] = row

    def finish(self, conn: Connection) -> SettleResult:
        """Charge the added records (each once: a settlement marker per request); what
        changed, summed over them (``settled``: False if every one was settled before)."""
        records, self.records = self.records, []
        if conn.dialect.name == "postgresql" and records:
            # A budget created after ``lock`` (committed before this statement) counts
            # these records too: its spend was computed without them.
            owners, attributions = [owners_of(r) for r in records], map(attribution_of, records)
            fresh, alerted = lock_budget_rows(
                conn, owners, held=(), alerted=True, attributions=list(attributions)
            )
            for budget_id, row in fresh.items():
                if budget_id not in self.rows:
                    self.rows[budget_id] = row
                    self.opening[budget_id] = row.spent_nano
            self.alerted |= alerted
        if not self.rows:  # no budget applies and none holds a reservation of these
            return SettleResult(True, 0, (), ())
        settled = _mark_settled(conn, [r.request_id for r in records], now=self.now)
        changed = {row.id: row for row in self.rolled} | self.adjusted
        self.adjusted = {}
        held: list[tuple[Any, ...]] = []
        if settled:
            ids = sorted(settled)
            held = DROP_HELD.run(conn, {"ids": ids})
        for budget_id, amount in held:
            holder = self.rows.get(int(budget_id))
            if holder is not None:
                holder.reserved_nano -= int(amount)
                changed[holder.id] = holder
        charged: dict[int, BudgetRow] = {}
        for record in records:
            if record.request_id not in settled:
                continue
            started_at = record.started_at
            cost = record.total_cost
            for row in charged_rows(self.rows, record):
                start, end = row.window
                if start <= started_at and (end is None or started_at < end):
                    row.spent_nano += cost
                    changed[row.id] = charged[row.id] = row
        crossed = [row.id for row in charged.values() if note_soft_limit(conn, row, now=self.now)]
        if self.alerted:  # else no budget here has an alert: nothing more to do
            self._note_alerts(conn, changed.values())
        save_rows(conn, sorted(changed.values(), key=lambda r: r.id), now=self.now)
        released = sum(int(amount) for _, amount in held)
        return SettleResult(bool(settled), released, tuple(sorted(charged)), tuple(sorted(crossed)))

    def _note_alerts(self, conn: Connection, changed: Iterable[BudgetRow]) -> None:
        """Outbox events for the thresholds this settlement's spend crossed (README,
        Budget alerts), in its transaction."""
        moves = [
            (row, self.opening[row.id])
            for row in changed
            if row.id in self.alerted and row.spent_nano != self.opening[row.id]
        ]
        if moves:
            note_crossings(conn, moves, now=self.now)
        for row, _ in moves:
            self.opening[row.id] = row.spent_nano


def _mark_settled(conn: Connection, request_ids: list[str], *, now: datetime) -> set[str]:
    """Settlement markers; the request ids not settled before (each is settled once)."""
    if not request_ids:
        return set()
    sql = MARK_SETTLED.text(is_postgres(conn), rows=len(request_ids))
    return {r[0] for r in run(conn, sql, [v for rid in request_ids for v in (rid, now)])}
