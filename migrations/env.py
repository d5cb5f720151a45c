"""Alembic environment: runs against the engine metering hands it (or sqlalchemy.url)."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, Engine, create_engine

from metering.storage.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            # SQLite changes a constraint by copying the table (batch mode); with foreign
            # keys on, dropping the old copy would delete (or refuse for) the rows that
            # refer to it. Off for the migration, as SQLite's ALTER TABLE procedure says
            # (a no-op inside a transaction: set on the raw connection before it), and
            # checked before it is turned on again.
            _driver(connection).execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                context.configure(
                    connection=connection,
                    target_metadata=target_metadata,
                    render_as_batch=sqlite,
                    compare_type=True,
                )
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left broken foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                _driver(connection).execute("PRAGMA foreign_keys=ON")


def _driver(connection: Connection) -> Any:
    """The DB-API connection under ``connection``, outside SQLAlchemy's transaction."""
    return connection.connection.driver_connection


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `metering db upgrade`")
run_migrations_online()
