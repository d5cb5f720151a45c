"""The budget gate's hooks in the recorder's batch transaction (see ``admission``).

``prepare_batch`` locks, before the batch inserts anything, every budget its
settlements will touch (applicable to any of its records, or holding one of their
reservations) in ascending id order — one statement, ``storage.budget_batch`` — rolls
them into their current window, then locks the rate windows the batch corrects in
(key, window) order. ``reserve`` locks budgets in the same order, so the two cannot
deadlock. The batch's state is kept on the connection for this transaction only:

* ``settle_record`` (each inserted record) adds the record to it;
* ``_SettleWithRate`` also adds the record's token correction of its rate window;
* ``finish`` (once, after every settle hook) drops the batch's reservations, charges
  every applicable budget whose window contains each record's ``started_at`` and
  saves each budget row once; then applies the rate corrections summed per window;
  then deletes the batch's calls in flight (one statement; inserted or replayed, each
  request now has its record).

Called outside a prepared batch (tests, tools), ``settle_record`` settles the record
alone with ``storage.budgets.settle``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, RootTransaction

from metering.core.rate_limits import window_start
from metering.gateway.admission import Admission
from metering.gateway.rate_limits import RateCharge
from metering.storage.budget_batch import BatchSettlement
from metering.storage.budgets import settle
from metering.storage.in_flight import delete_calls
from metering.storage.journal import RateTag
from metering.storage.rate_limits import add_tokens, lock_windows

_BATCH = "metering.budget_batch"


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(slots=True)
class _GateBatch:
    transaction: RootTransaction | None
    budgets: BatchSettlement
    request_ids: list[str]
    rate_deltas: dict[tuple[int, datetime], int] = field(default_factory=lambda: defaultdict(int))

    def finish(self, conn: Connection) -> None:
        self.budgets.finish(conn)
        for (key_id, window), delta in sorted(self.rate_deltas.items()):
            add_tokens(conn, key_id=key_id, window=window, delta=delta)
        self.rate_deltas.clear()
        delete_calls(conn, self.request_ids)
        if conn.info.get(_BATCH) is self:
            del conn.info[_BATCH]


def _batch_of(conn: Connection) -> _GateBatch | None:
    batch = conn.info.get(_BATCH)
    if isinstance(batch, _GateBatch) and batch.transaction is conn.get_transaction():
        return batch
    return None


def prepare_batch(conn: Connection, records: Sequence[Mapping[str, Any]]) -> _GateBatch:
    """The prepare hook: lock the batch's budgets, then its rate windows."""
    budgets = BatchSettlement.lock(conn, records, now=_utcnow())
    lock_windows(conn, [(r["key_id"], window_start(r["started_at"])) for r in records])
    batch = _GateBatch(conn.get_transaction(), budgets, [r["request_id"] for r in records])
    conn.info[_BATCH] = batch
    return batch


def settle_record(conn: Connection, record: Mapping[str, Any]) -> None:
    """The settle hook: the record (just inserted in ``conn``'s transaction) → budgets."""
    batch = _batch_of(conn)
    if batch is not None:
        batch.budgets.add(record)
        return
    settle(
        conn,
        request_id=record["request_id"],
        key_id=record["key_id"],
        team_id=record.get("team_id"),
        customer_id=record.get("customer_id"),
        actual_nano=int(record.get("total_cost") or 0),
        started_at=record["started_at"],
        now=_utcnow(),
    )


@dataclass(frozen=True, slots=True)
class SettleWithRate:
    """The settle hook of a request counted in a rate window: budgets, then the window
    counts the actual tokens instead of the estimate."""

    charge: RateCharge

    def __call__(self, conn: Connection, record: Mapping[str, Any]) -> None:
        settle_record(conn, record)
        batch = _batch_of(conn)
        if batch is None or not self.charge.correct_tokens:
            self.charge.settle(conn, record)
            return
        actual = int(record.get("total_tokens") or 0)
        key = (self.charge.key_id, self.charge.window)
        batch.rate_deltas[key] += actual - self.charge.estimated_tokens


def admission_for(*, budgets: bool, rate: RateTag | None) -> Admission:
    """The budget gate's hooks for a request that settles its budgets (and, with ``rate``,
    corrects its rate window): what ``BudgetGate.admit`` returns and what a journal
    replay rebuilds, so a replayed record settles exactly as it would have."""
    if rate is not None:
        charge = RateCharge(rate.key_id, rate.window, rate.estimated_tokens, rate.correct_tokens)
        return Admission(SettleWithRate(charge), prepare_batch, budgets=True, rate=rate)
    if budgets:
        return _BUDGETS
    return Admission()


_BUDGETS = Admission(settle_record, prepare_batch, budgets=True)
