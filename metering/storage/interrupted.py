"""The sweep of dead processes' calls in flight: each becomes one ``interrupted`` record.

``record_interrupted`` runs in the caller's transaction (commit right after):

1. read the calls in flight of dead processes (heartbeat older than the threshold, or
   no process row), never the sweeping process's own, oldest first;
2. price each as an interrupted record (``core.interrupted``: the billing rule);
3. lock the budgets their settlement touches (``BatchSettlement.lock``: ascending id,
   the order every writer uses), then lock those in-flight rows again, re-checking that
   their process is still dead (PostgreSQL: ``FOR UPDATE … SKIP LOCKED``, so concurrent
   sweepers never wait on each other's rows — budgets before in-flight rows, the order
   of the recorder, which deletes its rows after locking budgets: no deadlock);
4. insert the records (``write_records``: idempotent by ``request_id``, daily rollup
   included), settle the ones inserted (reservation dropped, cost charged to the window
   of ``started_at``, a settlement marker each), delete the in-flight rows;
5. forget dead processes with nothing left in flight.

Exactly once, whoever sweeps: two sweepers cannot both hold a row (the lock, or on
SQLite the one write transaction); a record already there — written by the process
itself, by a replay, or by another sweeper — is not inserted again and its budgets are
not charged again (the insert's ``ON CONFLICT DO NOTHING`` and the settlement markers).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from metering.core.interrupted import interrupted_record
from metering.core.pricing import PriceBook
from metering.core.responses import find_price, split_model
from metering.storage.budget_batch import BatchSettlement
from metering.storage.in_flight import delete_calls, forget_dead_processes, stale_calls
from metering.storage.records import write_records

SWEEP_BATCH = 500  # calls in flight recorded per transaction


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
    """Record up to ``limit`` calls in flight of dead processes (see the module doc)."""
    own, stale = own_process_id, stale_after_seconds
    found = stale_calls(conn, own_process_id=own, stale_after_seconds=stale, now=now, limit=limit)
    if not found:
        forget_dead_processes(conn, own_process_id=own, stale_after_seconds=stale, now=now)
        return Swept(0, 0, 0, 0)
    records = {}
    for call, seen in found:
        provider, model = split_model(call.requested_model)
        version = find_price(
            book,
            provider=provider,
            model=model,
            requested=call.requested_model,
            on=call.started_at.date(),
        )
        records[call.request_id] = interrupted_record(call, version, seen=seen, now=now)
    settlement = BatchSettlement.lock(conn, list(records.values()), now=now)
    claimed = stale_calls(
        conn,
        own_process_id=own,
        stale_after_seconds=stale,
        now=now,
        limit=len(records),
        request_ids=list(records),
        lock=True,
    )
    ids = [call.request_id for call, _ in claimed]
    inserted = set(write_records(conn, [records[i] for i in ids]))
    for request_id in ids:
        if request_id in inserted:
            settlement.add(records[request_id])
    settlement.finish(conn)
    delete_calls(conn, ids)
    forget_dead_processes(conn, own_process_id=own, stale_after_seconds=stale, now=now)
    billed = sum(int(records[i]["total_cost"]) for i in inserted)
    return Swept(len(found), len(inserted), len(ids) - len(inserted), billed)
