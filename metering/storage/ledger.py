"""The ledger: the one writer of usage records, budget and rate counters on the request
path (README, Storage). Plain calls, each in the caller's transaction (the gateway's
single writer thread, ``gateway.recorder``; commit right after):

``admit``
    before anything goes upstream: the budgets of the asks' owners locked (ascending
    id), each rate-limited ask counted in its key's window, then every ask decided
    against its budgets under that lock (``budget_batch.reserve_many``), the estimated
    tokens of an ask not reserved given back, and each admitted call kept in flight.
``record``
    after the upstream call, ONE transaction per batch: the budgets the records settle
    locked (ascending id), then the rate windows they correct ((key, window) order),
    the records inserted with their daily rollup (idempotent by ``request_id``; an
    ``interrupted`` estimate of the same call is replaced by the real record), the
    records actually inserted settled (reservations dropped, cost charged to every
    applicable budget whose window holds ``started_at``, a settlement marker each), the
    rate windows corrected to the actual tokens, the calls in flight deleted.
``record_interrupted``
    the sweep of dead processes' calls in flight: each becomes one ``interrupted``
    record, settled as ``record`` settles (``core.interrupted``: the billing rule).
``sweep``
    expired reservations given back (spent unchanged), old rate windows dropped.

One lock order everywhere — budgets, then rate windows, then calls in flight — so the
writers of several processes on one PostgreSQL cannot deadlock (a victim is retried by
the caller). The statements are those of the parts composed here (``records``,
``budget_batch``, ``rate_limits``, ``in_flight``); nothing else on the request path
calls their writing functions (``tests/storage/test_ledger.py`` checks the imports).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from metering.core.interrupted import INTERRUPTED, InFlightCall, interrupted_record
from metering.core.pricing import PriceBook
from metering.core.rate_limits import RateCharge, WindowUsage
from metering.core.records import UsageRow
from metering.core.responses import find_price, split_model
from metering.storage.budget_batch import (
    BatchSettlement,
    ReserveAsk,
    Unbounded,
    lock_owner_budgets,
    reserve_many,
)
from metering.storage.budget_results import Released, ReserveResult
from metering.storage.in_flight import (
    delete_calls,
    forget_dead_processes,
    insert_calls,
    stale_calls,
)
from metering.storage.rate_limits import add_tokens, delete_windows_before, lock_windows, take
from metering.storage.records import interrupted_among, replace_records, write_records
from metering.storage.reservations import release_expired

SWEEP_BATCH = 500  # calls in flight recorded per transaction


@dataclass(frozen=True, slots=True)
class Settlement:
    """How a record settles, as data (journaled with it: a replay settles the same way).

    ``budgets``: the call was admitted by the budget gate — its reservations are
    released, its cost charged to its budgets, its call in flight deleted. ``rate``: what
    it counted in its key's rate window, corrected to its actual tokens."""

    budgets: bool = False
    rate: RateCharge | None = None


NO_SETTLEMENT = Settlement()


@dataclass(frozen=True, slots=True)
class RateAsk:
    """A rate-limited request: count it in its key's ``window`` if the limits allow."""

    key_id: int
    window: datetime
    rpm: int | None
    tpm: int | None
    tokens: int  # estimated at admission


class RateRefused(Exception):
    """The key's rate window refused the request (its usage, for the 429 message)."""

    def __init__(self, used: WindowUsage) -> None:
        super().__init__("rate limited")
        self.used = used


@dataclass(frozen=True, slots=True)
class AdmitAsk:
    reserve: ReserveAsk
    rate: RateAsk | None = None
    call: InFlightCall | None = None  # kept in flight if admitted (its reservation filled in)


@dataclass(frozen=True, slots=True)
class Admitted:
    """One ask's outcome: its budget decision (a ``RateRefused`` or ``Conflict`` as an
    exception) and, if it is admitted and rate-limited, what it counted."""

    decision: ReserveResult | Unbounded | Exception
    rate: RateCharge | None

    @property
    def accepted(self) -> bool:
        d = self.decision
        return isinstance(d, ReserveResult) and d.accepted


def admit(
    conn: Connection, asks: Sequence[AdmitAsk], *, now: datetime, ttl_seconds: int
) -> list[Admitted]:
    """Decide every ask, in order, in the caller's transaction (see the module doc)."""
    locked = lock_owner_budgets(
        conn, [a.reserve.owners for a in asks], attributions=[a.reserve.attribution for a in asks]
    )
    charges: list[RateCharge | None] = []
    refused: list[Exception | None] = []
    for ask in asks:
        rate = ask.rate
        if rate is None:
            charges.append(None)
            refused.append(None)
            continue
        ok, used = take(
            conn,
            key_id=rate.key_id,
            window=rate.window,
            rpm=rate.rpm,
            tpm=rate.tpm,
            tokens=rate.tokens,
        )
        correct = rate.tpm is not None
        charges.append(RateCharge(rate.key_id, rate.window, rate.tokens, correct) if ok else None)
        refused.append(None if ok else RateRefused(used))
    decisions = reserve_many(
        conn,
        [a.reserve for a in asks],
        now=now,
        ttl_seconds=ttl_seconds,
        locked=locked,
        refused_already=refused,
    )
    out: list[Admitted] = []
    calls: list[InFlightCall] = []
    for ask, decision, charge in zip(asks, decisions, charges, strict=True):
        admitted = Admitted(decision, charge)
        if not admitted.accepted:
            if charge is not None and charge.correct_tokens:  # it uses no tokens
                back = -charge.estimated_tokens
                add_tokens(conn, key_id=charge.key_id, window=charge.window, delta=back)
            out.append(Admitted(decision, None))
            continue
        assert isinstance(decision, ReserveResult)
        if ask.call is not None:
            reserved = decision.amount_nano if decision.budget_ids else None
            calls.append(ask.call._replace(reserved_nano=reserved))
        out.append(admitted)
    if calls:
        insert_calls(conn, calls)
    return out


def record(
    conn: Connection, entries: Sequence[tuple[UsageRow, Settlement]], *, now: datetime
) -> list[bool]:
    """Insert and settle a batch (see the module doc); per entry, whether its record was
    written (False: its ``request_id`` was stored already — nothing counted twice).

    A record that arrives after the sweep recorded its call as ``interrupted`` (its
    process stalled past the staleness threshold, or its journal was replayed late)
    replaces that estimate: the record, its rollup sums and the budgets charged move from
    the estimate to the real cost, and its rate window is corrected — still one record."""
    settling = [row for row, how in entries if how.budgets]
    budgets = BatchSettlement.lock(conn, settling, now=now) if settling else None
    rated = [(row, how.rate) for row, how in entries if how.rate is not None]
    corrected = [(row, charge) for row, charge in rated if charge.correct_tokens]
    lock_windows(conn, [(c.key_id, c.window) for _, c in corrected])
    inserted = set(write_records(conn, [row for row, _ in entries]))
    late = [row for row in settling if row.request_id not in inserted and row.status != INTERRUPTED]
    estimates = interrupted_among(conn, [row.request_id for row in late]) if late else {}
    replaced = [(estimates[row.request_id], row) for row in late if row.request_id in estimates]
    replace_records(conn, replaced)
    if budgets is not None:
        for row in settling:
            if row.request_id in inserted:
                budgets.add(row)
        for old, new in replaced:
            budgets.adjust(new, new.total_cost - old.total_cost)
        budgets.finish(conn)
    written = inserted | {new.request_id for _, new in replaced}
    deltas: dict[tuple[int, datetime], int] = defaultdict(int)
    for row, charge in corrected:
        if row.request_id in written:
            deltas[(charge.key_id, charge.window)] += row.total_tokens - charge.estimated_tokens
    for (key_id, window), delta in sorted(deltas.items()):
        add_tokens(conn, key_id=key_id, window=window, delta=delta)
    if settling:
        delete_calls(conn, [row.request_id for row in settling])
    return [row.request_id in written for row, _ in entries]


@dataclass(frozen=True, slots=True)
class Swept:
    found: int  # calls in flight of dead processes seen
    recorded: int  # interrupted records inserted
    already: int  # rows whose record existed (the call was recorded after all)
    billed_nano: int  # total_cost of the records inserted


def record_interrupted(
    conn: Connection,
    *,
    book: PriceBook,
    own_process_id: int | None,
    stale_after_seconds: float,
    now: datetime,
    limit: int = SWEEP_BATCH,
) -> Swept:
    """Record up to ``limit`` calls in flight of dead processes (never this process's).

    Oldest first: each priced as an interrupted record, the budgets their settlement
    touches locked, then their in-flight rows claimed again, re-checking that their
    process is still dead (PostgreSQL: ``FOR UPDATE … SKIP LOCKED``, so concurrent
    sweepers never wait on each other's rows); the records inserted and settled as
    ``record`` does, the rows deleted, dead processes with nothing left forgotten.
    Exactly once, whoever sweeps: a record already there (written by the process itself,
    a replay or another sweeper) is neither inserted nor charged again."""
    own, stale = own_process_id, stale_after_seconds
    found = stale_calls(conn, own_process_id=own, stale_after_seconds=stale, now=now, limit=limit)
    if not found:
        forget_dead_processes(conn, own_process_id=own, stale_after_seconds=stale, now=now)
        return Swept(0, 0, 0, 0)
    rows: dict[str, UsageRow] = {}
    for call, seen in found:
        provider, model = split_model(call.requested_model)
        version = find_price(
            book,
            provider=provider,
            model=model,
            requested=call.requested_model,
            on=call.started_at.date(),
        )
        rows[call.request_id] = interrupted_record(call, version, seen=seen, now=now)
    settlement = BatchSettlement.lock(conn, list(rows.values()), now=now)
    claimed = stale_calls(
        conn,
        own_process_id=own,
        stale_after_seconds=stale,
        now=now,
        limit=len(rows),
        request_ids=list(rows),
        lock=True,
    )
    ids = [call.request_id for call, _ in claimed]
    inserted = set(write_records(conn, [rows[i] for i in ids]))
    for request_id in ids:
        if request_id in inserted:
            settlement.add(rows[request_id])
    settlement.finish(conn)
    delete_calls(conn, ids)
    forget_dead_processes(conn, own_process_id=own, stale_after_seconds=stale, now=now)
    billed = sum(rows[i].total_cost for i in inserted)
    return Swept(len(found), len(inserted), len(ids) - len(inserted), billed)


def sweep(conn: Connection, *, now: datetime, rate_windows_before: datetime) -> Released:
    """Give back every expired reservation (spent unchanged; their process crashed or
    hung) and drop the rate windows that started before ``rate_windows_before``."""
    released = release_expired(conn, now=now)
    delete_windows_before(conn, before=rate_windows_before)
    return released
