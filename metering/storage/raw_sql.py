"""Running the ledger's statements (``storage.compiled``) on the DBAPI cursor.

SQLAlchemy Core costs ≈ 80 µs of CPU per ``execute`` (cache key, execution context,
result wrapping; ``exec_driver_sql`` still ≈ 55 µs) against ≈ 11 µs for the same
statement on the DBAPI cursor, and the gateway's single writer runs ≈ 12 statements
per request at concurrency 1. The hot statements are therefore compiled once per dialect
from SQLAlchemy Core (``storage.compiled``) and executed here on the cursor of the
caller's ``Connection``, inside its transaction. What SQLAlchemy did for them is done
here:

* values: SQLite stores ``DateTime`` as ``YYYY-MM-DD HH:MM:SS.ffffff`` and ``Date`` as
  ISO text (SQLAlchemy's formats, so rows written either way compare equal); psycopg
  adapts both natively;
* errors: a DBAPI error is raised as SQLAlchemy's ``DBAPIError`` (``OperationalError``
  …, ``.orig`` kept), so callers' ``except SQLAlchemyError`` (fail closed, 503) and the
  deadlock retry see what they saw before.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

Row = tuple[Any, ...]


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def sqlite_value(value: Any) -> Any:
    """A parameter as SQLite stores it (dates as SQLAlchemy's text)."""
    if isinstance(value, datetime):
        return value.isoformat(" ", "microseconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def sqlite_datetime(value: Any) -> datetime | None:
    """A ``DateTime`` column as SQLite returns it (text) → datetime."""
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def run(
    conn: Connection, sql: str, params: Sequence[Any] = (), *, adapted: bool = False
) -> list[Row]:
    """Execute ``sql`` in ``conn``'s transaction; its rows (empty if it returns none).

    ``adapted``: the caller already gave SQLite its dates as text (``sqlite_value``)."""
    if not adapted and not is_postgres(conn):
        params = [sqlite_value(v) for v in params]
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            sql, params, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
        ) from exc
    finally:
        cursor.close()
