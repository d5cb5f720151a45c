"""Open the metering database ready for use: engine, schema, shipped price sheets."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import DatabaseError

from metering.errors import DatabaseUnavailable
from metering.storage.engine import make_engine
from metering.storage.migrate import ensure_schema
from metering.storage.prices import sync_shipped_sheets


def open_database(url: str) -> Engine:
    """Engine for ``url``; an empty database gets the schema, every one the shipped prices."""
    engine = make_engine(url)
    try:
        ensure_schema(engine)
        sync_shipped_sheets(engine)
    except DatabaseError as exc:
        engine.dispose()
        if "file is not a database" in str(exc.orig):
            shown = engine.url.render_as_string()
            raise DatabaseUnavailable(f"{shown} is not a SQLite database file") from None
        raise
    return engine
