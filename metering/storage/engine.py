"""Engine factory: SQLite (WAL, busy timeout, foreign keys) or PostgreSQL (psycopg 3)."""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from metering.errors import InvalidInput

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` / ``postgres://`` and use the psycopg 3 driver for them."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str, *, wal_autocheckpoint: int | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url``; nothing connects until first use. ``wal_autocheckpoint``
    (SQLite only): the pages of write-ahead log after which a commit checkpoints (SQLite's
    default 1,000); the gateway raises it and checkpoints in the background
    (``storage.checkpoint``)."""
    url = normalize_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(
            f"database URL {url!r} is not a SQLAlchemy URL "
            "(e.g. sqlite:///metering.db or postgresql+psycopg://user@host/db)"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise InvalidInput(
            f"database URL {parsed.render_as_string()!r}: {backend} is not supported; "
            "use SQLite (sqlite:///metering.db) or PostgreSQL (postgresql+psycopg://…)"
        )
    if backend == "sqlite":
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        if wal_autocheckpoint is not None:
            pages = int(wal_autocheckpoint)
            event.listen(
                engine,
                "connect",
                lambda dbapi_conn, _record: dbapi_conn.execute(
                    f"PRAGMA wal_autocheckpoint={pages}"
                ),
            )
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer; NORMAL sync is durable across process crashes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
