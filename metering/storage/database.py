"""Open the metering database ready for use: engine, schema, shipped price sheets."""

from __future__ import annotations

from sqlalchemy import Engine

from metering.storage.engine import make_engine
from metering.storage.migrate import ensure_schema
from metering.storage.prices import sync_shipped_sheets


def open_database(url: str) -> Engine:
    """Engine for ``url``; an empty database gets the schema, every one the shipped prices."""
    engine = make_engine(url)
    ensure_schema(engine)
    sync_shipped_sheets(engine)
    return engine
