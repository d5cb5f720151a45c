"""Serving processes and their calls in flight (SQL; see ``storage.ledger``).

``serving_processes``
    one row per running ``metering serve`` worker: ``register_process`` at startup,
    ``heartbeat`` every few seconds, ``deregister_process`` at a clean stop. A process
    whose heartbeat is older than the staleness threshold, or whose row is gone, is dead.
``calls_in_flight``
    one row per admitted request (``core.interrupted.InFlightCall``): ``insert_calls`` in
    the transaction that admits it, ``delete_calls`` in the one that inserts its usage
    record — one multi-row statement per batch each.

Clock: on PostgreSQL, heartbeats and the staleness cutoff are the database server's
time, so processes on hosts whose clocks disagree cannot declare each other dead; a
SQLite file has one host, whose clock is used. The statements are built from
SQLAlchemy Core once per dialect and run on the DBAPI cursor (``storage.compiled``), as
the rest of the gateway's writer.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)

from metering.core.interrupted import InFlightCall, LastSeen
from metering.storage.compiled import Sql, table
from metering.storage.models import CallInFlight, ServingProcess
from metering.storage.raw_sql import is_postgres, run, sqlite_datetime

CALLS_PER_STATEMENT = 1000  # × 15 columns: under SQLite's 32,766 parameters
_CALL_COLUMNS = InFlightCall._fields


def _clock(postgres: bool) -> Any:
    """Now, naive UTC: the database server's on PostgreSQL, the caller's on SQLite."""
    return func.timezone(literal_column("'UTC'"), func.now()) if postgres else bindparam("now")


def _cutoff(postgres: bool) -> Any:
    """Heartbeats before this are stale (``stale_seconds`` ago; SQLite: ``cutoff``)."""
    if postgres:
        return _clock(True) - literal_column("interval '1 second'") * bindparam("stale_seconds")
    return bindparam("cutoff")


def _register(postgres: bool) -> Any:
    p = table(ServingProcess)
    values: dict[str, Any] = {"host": bindparam("host"), "pid": bindparam("pid")}
    values |= {"started_at": _clock(postgres), "heartbeat_at": _clock(postgres)}
    return insert(p).values(values).returning(p.c.id)


def _heartbeat(postgres: bool) -> Any:
    p = table(ServingProcess)
    alive = update(p).where(p.c.id == bindparam("process_id"))
    return alive.values({p.c.heartbeat_at: _clock(postgres)}).returning(p.c.id)


def _deregister(postgres: bool) -> Any:
    p = table(ServingProcess)
    return delete(p).where(p.c.id == bindparam("process_id"))


def _insert_calls(postgres: bool) -> Any:
    f = table(CallInFlight)
    return insert(f).values({name: bindparam(name) for name in _CALL_COLUMNS}).inline()


def _delete_calls(postgres: bool) -> Any:
    f = table(CallInFlight)
    return delete(f).where(f.c.request_id.in_(bindparam("ids", expanding=True)))


@functools.cache
def _stale(only: bool, lock: bool) -> Sql:
    """Calls in flight of dead processes, oldest first (``only``: of these request ids;
    ``lock``: FOR UPDATE … SKIP LOCKED on PostgreSQL)."""

    def build(postgres: bool) -> Any:
        f, p = table(CallInFlight), table(ServingProcess)
        dead = or_(p.c.id.is_(None), p.c.heartbeat_at < _cutoff(postgres))
        query = (
            select(*(f.c[name] for name in _CALL_COLUMNS), p.c.host, p.c.pid, p.c.heartbeat_at)
            .select_from(f.outerjoin(p, p.c.id == f.c.process_id))
            .where(f.c.process_id != bindparam("own"), dead)
        )
        if only:
            query = query.where(f.c.request_id.in_(bindparam("ids", expanding=True)))
        query = query.order_by(f.c.started_at, f.c.request_id).limit(bindparam("limit"))
        if lock and postgres:
            query = query.with_for_update(of=f, skip_locked=True)
        return query

    return Sql(build)


def _forget(postgres: bool) -> Any:
    f, p = table(CallInFlight), table(ServingProcess)
    busy = exists().where(f.c.process_id == p.c.id)
    idle = and_(p.c.id != bindparam("own"), p.c.heartbeat_at < _cutoff(postgres), ~busy)
    return delete(p).where(idle)


REGISTER = Sql(_register)
HEARTBEAT = Sql(_heartbeat)
DEREGISTER = Sql(_deregister)
INSERT_CALLS = Sql(_insert_calls, rows=True)
DELETE_CALLS = Sql(_delete_calls)
FORGET = Sql(_forget)


def _clock_values(conn: Connection, now: datetime, stale_after_seconds: float) -> dict[str, Any]:
    if is_postgres(conn):
        return {"stale_seconds": stale_after_seconds}
    return {"cutoff": now - timedelta(seconds=stale_after_seconds)}


def register_process(conn: Connection, *, host: str, pid: int, now: datetime) -> int:
    """A new serving process, alive as of now; its id."""
    values = {"host": host, "pid": pid, "now": now}
    return int(REGISTER.run(conn, values)[0][0])


def heartbeat(conn: Connection, *, process_id: int, now: datetime) -> bool:
    """The process is alive as of now; False if its row is gone (declared dead and
    forgotten: it must register again)."""
    return bool(HEARTBEAT.run(conn, {"process_id": process_id, "now": now}))


def deregister_process(conn: Connection, *, process_id: int) -> None:
    """A clean stop: what is still in flight of this process is left to the sweep."""
    DEREGISTER.run(conn, {"process_id": process_id})


def insert_calls(conn: Connection, calls: Sequence[InFlightCall]) -> None:
    postgres = is_postgres(conn)
    for first in range(0, len(calls), CALLS_PER_STATEMENT):
        chunk = calls[first : first + CALLS_PER_STATEMENT]
        sql = INSERT_CALLS.text(postgres, rows=len(chunk))  # in ``_CALL_COLUMNS`` order
        run(conn, sql, [v for call in chunk for v in call])


def delete_calls(conn: Connection, request_ids: Sequence[str]) -> None:
    postgres = is_postgres(conn)
    for first in range(0, len(request_ids), CALLS_PER_STATEMENT):
        chunk = request_ids[first : first + CALLS_PER_STATEMENT]
        run(conn, DELETE_CALLS.text(postgres, ids=len(chunk)), chunk)


def stale_calls(
    conn: Connection,
    *,
    own_process_id: int | None,
    stale_after_seconds: float,
    now: datetime,
    limit: int,
    request_ids: Sequence[str] = (),
    lock: bool = False,
) -> list[tuple[InFlightCall, LastSeen]]:
    """Calls in flight of dead processes (never ``own_process_id``'s), oldest first.

    ``request_ids``: only these. ``lock`` (PostgreSQL): lock the rows returned
    (``FOR UPDATE … SKIP LOCKED``: rows another sweeper holds are left to it)."""
    values = _clock_values(conn, now, stale_after_seconds)
    values |= {"own": own_process_id or 0, "ids": list(request_ids), "limit": limit}
    rows = _stale(bool(request_ids), lock).run(conn, values)
    width = len(_CALL_COLUMNS)
    out = []
    for row in rows:
        values = dict(zip(_CALL_COLUMNS, row[:width], strict=True))
        values["stream"] = bool(values["stream"])
        values["started_at"] = sqlite_datetime(values["started_at"])
        host, pid, seen_at = row[width:]
        out.append((InFlightCall(**values), LastSeen(host, pid, sqlite_datetime(seen_at))))
    return out


def forget_dead_processes(
    conn: Connection, *, own_process_id: int | None, stale_after_seconds: float, now: datetime
) -> None:
    """Delete the rows of dead processes that have nothing left in flight."""
    values = _clock_values(conn, now, stale_after_seconds) | {"own": own_process_id or 0}
    FORGET.run(conn, values)
