"""Serving processes and their calls in flight (SQL; see ``storage.interrupted``).

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
SQLite file has one host, whose clock is used. The hot statements are SQL text on the
DBAPI cursor (``storage.raw_sql``), as the rest of the gateway's writer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from metering.core.interrupted import InFlightCall, LastSeen
from metering.storage.raw_sql import is_postgres, render, rows_of, run, sqlite_datetime

CALLS_PER_STATEMENT = 1000  # × 12 columns: under SQLite's 32,766 parameters
_CALL_COLUMNS = InFlightCall._fields
_PG_NOW = "(now() AT TIME ZONE 'UTC')"

_REGISTER = (
    "INSERT INTO serving_processes (host, pid, started_at, heartbeat_at) "
    "VALUES (?, ?, {now}, {now}) RETURNING id"
)
_HEARTBEAT = "UPDATE serving_processes SET heartbeat_at = {now} WHERE id = ? RETURNING id"
_DEREGISTER = "DELETE FROM serving_processes WHERE id = ?"
_INSERT = "INSERT INTO calls_in_flight ({columns}) VALUES {rows}"
_DELETE = "DELETE FROM calls_in_flight WHERE request_id IN ({ids})"
_STALE = (
    "SELECT {columns}, p.host, p.pid, p.heartbeat_at "
    "FROM calls_in_flight f LEFT JOIN serving_processes p ON p.id = f.process_id "
    "WHERE f.process_id <> ? AND (p.id IS NULL OR p.heartbeat_at < {cutoff}){only} "
    "ORDER BY f.started_at, f.request_id LIMIT ?{lock}"
)
_FORGET = (
    "DELETE FROM serving_processes WHERE id <> ? AND heartbeat_at < {cutoff} "
    "AND NOT EXISTS (SELECT 1 FROM calls_in_flight f WHERE f.process_id = serving_processes.id)"
)


def _now(conn: Connection, now: datetime) -> tuple[str, list[Any]]:
    """The clock as SQL and its parameters (see the module doc)."""
    return (_PG_NOW, []) if is_postgres(conn) else ("?", [now])


def _cutoff(conn: Connection, now: datetime, stale_after_seconds: float) -> tuple[str, list[Any]]:
    if is_postgres(conn):
        return f"{_PG_NOW} - make_interval(secs => ?)", [stale_after_seconds]
    return "?", [now - timedelta(seconds=stale_after_seconds)]


def register_process(conn: Connection, *, host: str, pid: int, now: datetime) -> int:
    """A new serving process, alive as of now; its id."""
    clock, params = _now(conn, now)
    sql = render(is_postgres(conn), _REGISTER, now=clock)
    return int(run(conn, sql, [host, pid, *params, *params])[0][0])


def heartbeat(conn: Connection, *, process_id: int, now: datetime) -> bool:
    """The process is alive as of now; False if its row is gone (declared dead and
    forgotten: it must register again)."""
    clock, params = _now(conn, now)
    sql = render(is_postgres(conn), _HEARTBEAT, now=clock)
    return bool(run(conn, sql, [*params, process_id]))


def deregister_process(conn: Connection, *, process_id: int) -> None:
    """A clean stop: what is still in flight of this process is left to the sweep."""
    run(conn, render(is_postgres(conn), _DEREGISTER), [process_id])


def insert_calls(conn: Connection, calls: Sequence[InFlightCall]) -> None:
    postgres = is_postgres(conn)
    for first in range(0, len(calls), CALLS_PER_STATEMENT):
        chunk = calls[first : first + CALLS_PER_STATEMENT]
        sql = render(
            postgres,
            _INSERT,
            columns=", ".join(_CALL_COLUMNS),
            rows=rows_of(len(_CALL_COLUMNS), len(chunk)),
        )
        run(conn, sql, [v for call in chunk for v in call])


def delete_calls(conn: Connection, request_ids: Sequence[str]) -> None:
    postgres = is_postgres(conn)
    for first in range(0, len(request_ids), CALLS_PER_STATEMENT):
        chunk = request_ids[first : first + CALLS_PER_STATEMENT]
        run(conn, render(postgres, _DELETE, ids=len(chunk)), chunk)


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
    postgres = is_postgres(conn)
    cutoff, cutoff_params = _cutoff(conn, now, stale_after_seconds)
    only = f" AND f.request_id IN ({', '.join(['?'] * len(request_ids))})" if request_ids else ""
    sql = render(
        postgres,
        _STALE,
        columns=", ".join(f"f.{c}" for c in _CALL_COLUMNS),
        cutoff=cutoff,
        only=only,
        lock=" FOR UPDATE OF f SKIP LOCKED" if lock and postgres else "",
    )
    rows = run(conn, sql, [own_process_id or 0, *cutoff_params, *request_ids, limit])
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
    cutoff, params = _cutoff(conn, now, stale_after_seconds)
    sql = render(is_postgres(conn), _FORGET, cutoff=cutoff)
    run(conn, sql, [own_process_id or 0, *params])
