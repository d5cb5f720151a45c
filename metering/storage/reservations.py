"""Reserve → settle (or release): the budget protocol around one request (SPEC §7).

Every function works on the caller's ``Connection`` and transaction:

    reserve   before the upstream call, in its own short transaction (commit right
              after: the budget locks are held until it ends): rolls each applicable
              budget (the key's, its team's, its customer's) into its current window,
              sweeps its expired reservations, refuses if any hard limit could be
              passed, else adds the worst case to ``reserved_nano`` of all of them and
              writes one ``reservations`` row per budget.
    settle    in the transaction that inserts the request's usage record: drops the
              request's reservations and adds the record's cost to ``spent_nano`` of
              every applicable budget whose current window contains ``started_at``
              (also when the reservation had expired and been swept). Idempotent.
              The gateway's batch settlement (``budget_batch.BatchSettlement``) for
              one record: the rules are written once, there.
    release   when nothing will be recorded (the request never went upstream).
    release_expired  the sweep for reservations of crashed processes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select

from metering.errors import Conflict, InvalidInput
from metering.storage.budget_batch import (
    BatchSettlement,
    ReserveAsk,
    lock_records_budgets,
    reserve_many,
)
from metering.storage.budget_results import Released, ReserveResult, SettleResult
from metering.storage.budget_rows import BudgetRow, lock_budgets, save_counters
from metering.storage.models import BudgetSettlement, Reservation, UsageRecord


def reserve(
    conn: Connection,
    *,
    request_id: str,
    key_id: int,
    team_id: int | None,
    customer_id: int | None,
    amount_nano: int,
    now: datetime,
    ttl_seconds: int,
    models: tuple[str, ...] = (),
) -> ReserveResult:
    """Reserve ``amount_nano`` in every applicable budget, or in none (refused): one
    request through the same path as the gateway's batches (``budget_batch.reserve_many``).

    ``models``: the ``provider/model`` candidates it may be served by (none: only the
    budgets not narrowed to a model apply). Commit right after: the locks are held until
    the transaction ends."""
    if amount_nano < 0 or ttl_seconds <= 0:
        raise InvalidInput("a reservation needs a non-negative amount and a positive ttl")
    ask = ReserveAsk(request_id, (key_id, team_id, customer_id), amount_nano, now, models)
    (result,) = reserve_many(conn, [ask], now=now, ttl_seconds=ttl_seconds)
    if isinstance(result, Exception):
        raise result
    if not isinstance(result, ReserveResult):  # Unbounded: only for amount None
        raise AssertionError(f"unexpected reservation result {result!r}")
    return result


def _delete_reservations(conn: Connection, condition: Any) -> dict[int, list[int]]:
    """Delete reservations matching ``condition``; their amounts by budget id."""
    deleted = conn.execute(
        delete(Reservation)
        .where(condition)
        .returning(Reservation.budget_id, Reservation.amount_nano)
    ).all()
    amounts: dict[int, list[int]] = defaultdict(list)
    for budget_id, amount in deleted:
        amounts[int(budget_id)].append(int(amount))
    return amounts


def _release_expired_of(conn: Connection, rows: list[BudgetRow], *, now: datetime) -> int:
    """Give back the expired reservations of these (locked) budgets; how many."""
    ids = [r.id for r in rows]
    amounts = _delete_reservations(
        conn, Reservation.budget_id.in_(ids) & (Reservation.expires_at <= now)
    )
    for row in rows:
        row.reserved_nano -= sum(amounts.get(row.id, ()))
    return sum(len(v) for v in amounts.values())


def settle(
    conn: Connection,
    *,
    request_id: str,
    key_id: int,
    team_id: int | None,
    customer_id: int | None,
    actual_nano: int,
    started_at: datetime,
    now: datetime,
) -> SettleResult:
    """Replace the request's reservations by its actual cost. Call it in the transaction
    that inserted the request's usage record (whose ``total_cost`` and ``started_at``
    must be ``actual_nano`` and ``started_at``); a second call changes nothing.

    The gateway's batch settlement (``budget_batch.BatchSettlement``) for this one
    record, locked after its insert."""
    recorded = conn.execute(
        select(
            UsageRecord.total_cost,
            UsageRecord.started_at,
            UsageRecord.provider,
            UsageRecord.model,
            UsageRecord.end_user,
            UsageRecord.end_user_scope,
            UsageRecord.tags,
        ).where(UsageRecord.request_id == request_id)
    ).first()
    if recorded is None:
        record = _Charge(request_id, key_id, team_id, customer_id, started_at, actual_nano)
    else:
        provider, model, end_user, scope, tags = recorded[2:]
        record = _Charge(
            request_id, key_id, team_id, customer_id, started_at, actual_nano,
            provider, model, end_user, scope, tags,
        )  # fmt: skip
    rows = lock_records_budgets(conn, [record])
    if not rows:
        return SettleResult(True, 0, (), ())  # no budget concerned: nothing to do
    if recorded is None:
        raise Conflict(
            f"settle({request_id!r}) needs the usage record inserted first, in the same "
            "transaction; use release() for a request that is not recorded"
        )
    if (int(recorded[0]), recorded[1]) != (actual_nano, started_at):
        raise Conflict(
            f"settle({request_id!r}): cost {actual_nano} / start {started_at} differ from the "
            f"record's {recorded[0]} / {recorded[1]}"
        )
    marker = select(BudgetSettlement.request_id).where(BudgetSettlement.request_id == request_id)
    if conn.execute(marker).first() is not None:
        return SettleResult(False, 0, (), ())  # before rolling: its cost is counted already
    settlement = BatchSettlement.from_locked(conn, rows, now=now, inserted=request_id)
    settlement.add(record)
    return settlement.finish(conn)


@dataclass(frozen=True, slots=True)
class _Charge:
    """The part of a usage record that ``settle`` charges (``budget_batch.Charged``)."""

    request_id: str
    key_id: int
    team_id: int | None
    customer_id: int | None
    started_at: datetime
    total_cost: int
    provider: str = ""  # served, as on the record
    model: str = ""
    end_user: str | None = None  # the record's attribution
    end_user_scope: str | None = None
    tags: str | None = None


def release(conn: Connection, *, request_id: str, now: datetime) -> int:
    """Give back a request's reservations without charging anything (it was never sent
    upstream, so it has no record). Returns the amount released per budget, summed."""
    held = conn.execute(
        select(Reservation.budget_id).where(Reservation.request_id == request_id)
    ).scalars()
    rows = lock_budgets(conn, held)
    amounts = _delete_reservations(conn, Reservation.request_id == request_id)
    for row in rows:
        row.reserved_nano -= sum(amounts.get(row.id, ()))
        save_counters(conn, row, now=now)
    return sum(sum(v) for v in amounts.values())


def release_expired(conn: Connection, *, now: datetime) -> Released:
    """Sweep reservations whose ``expires_at`` has passed (their process crashed or hung):
    delete them and give back their amount. Spent is unchanged."""
    ids = conn.execute(
        select(Reservation.budget_id).where(Reservation.expires_at <= now).distinct()
    ).scalars()
    rows = lock_budgets(conn, ids)
    before = sum(r.reserved_nano for r in rows)
    count = _release_expired_of(conn, rows, now=now)
    for row in rows:
        save_counters(conn, row, now=now)
    return Released(count, before - sum(r.reserved_nano for r in rows))
