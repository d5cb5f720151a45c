"""Rate-limit counters in the database: one ``rate_windows`` row per key per minute.

``take`` is one conditional UPSERT (``INSERT … ON CONFLICT DO UPDATE … WHERE`` the
limits still allow it ``RETURNING``), atomic on PostgreSQL and SQLite alike, so every
``metering serve`` process sharing the database enforces the same limits and the
hot path is a single statement (only for keys that have a limit). The rule is
``core.rate_limits.admits``. A row is locked only for the statement, except in the
recorder's batch, which locks the rows it will correct up front (``lock_windows``,
sorted) after the budgets it settles.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, or_, select, update

from metering.core.rate_limits import WindowUsage
from metering.storage.budget_rows import insert_stmt
from metering.storage.compiled import Sql, table
from metering.storage.models import RateWindow


def _lock_windows(postgres: bool) -> Any:
    w = table(RateWindow)
    wanted = and_(
        w.c.key_id.in_(bindparam("keys", expanding=True)),
        w.c.window_start.in_(bindparam("windows", expanding=True)),
    )
    query = select(w.c.key_id).where(wanted).order_by(w.c.key_id, w.c.window_start)
    return query.with_for_update()


LOCK_WINDOWS = Sql(_lock_windows)  # Core, compiled once, run on the cursor (``compiled``)


def take(
    conn: Connection,
    *,
    key_id: int,
    window: datetime,
    rpm: int | None,
    tpm: int | None,
    tokens: int,
) -> tuple[bool, WindowUsage]:
    """Count one request of ``tokens`` in the key's ``window`` if its limits allow it.

    Returns (admitted, usage of the window: after counting, or as found if refused)."""
    conditions = []
    if rpm is not None:
        conditions.append(RateWindow.requests < rpm)
    if tpm is not None:
        conditions.append(or_(RateWindow.tokens == 0, RateWindow.tokens + tokens <= tpm))
    stmt = insert_stmt(conn, RateWindow).values(
        key_id=key_id, window_start=window, requests=1, tokens=tokens
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["key_id", "window_start"],
        set_={"requests": RateWindow.requests + 1, "tokens": RateWindow.tokens + tokens},
        where=and_(*conditions) if conditions else None,
    ).returning(RateWindow.requests, RateWindow.tokens)
    row = conn.execute(stmt).first()
    if row is not None:
        return True, WindowUsage(int(row[0]), int(row[1]))
    found = conn.execute(
        select(RateWindow.requests, RateWindow.tokens).where(
            RateWindow.key_id == key_id, RateWindow.window_start == window
        )
    ).one()
    return False, WindowUsage(int(found[0]), int(found[1]))


def add_tokens(conn: Connection, *, key_id: int, window: datetime, delta: int) -> None:
    """Correct a window's token count (actual − estimated; or −estimate to give it back)."""
    if delta == 0:
        return
    conn.execute(
        update(RateWindow)
        .where(RateWindow.key_id == key_id, RateWindow.window_start == window)
        .values(tokens=RateWindow.tokens + delta)
    )


def lock_windows(conn: Connection, windows: Iterable[tuple[int, datetime]]) -> None:
    """Lock these (key, window) rows, in (key, window) order, for the transaction
    (PostgreSQL; SQLite's write transaction already excludes other writers)."""
    wanted = sorted(set(windows))
    if not wanted or conn.dialect.name != "postgresql":
        return
    keys = sorted({k for k, _ in wanted})
    starts = sorted({w for _, w in wanted})
    # On the cursor: it runs in every recorder batch on PostgreSQL.
    LOCK_WINDOWS.run(conn, {"keys": keys, "windows": starts})


def window_usage(conn: Connection, *, key_id: int, window: datetime) -> WindowUsage:
    found = conn.execute(
        select(RateWindow.requests, RateWindow.tokens).where(
            RateWindow.key_id == key_id, RateWindow.window_start == window
        )
    ).first()
    return WindowUsage(0, 0) if found is None else WindowUsage(int(found[0]), int(found[1]))


def delete_windows_before(conn: Connection, *, before: datetime) -> int:
    """Drop the counters of windows that started before ``before`` (the sweep)."""
    result = conn.execute(delete(RateWindow).where(RateWindow.window_start < before))
    return int(result.rowcount or 0)
