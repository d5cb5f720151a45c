"""Schema migrations (alembic) and the first-use bootstrap of a database.

alembic is imported only when a migration or a revision check needs it: a command on a
database already at ``SCHEMA_REVISION`` checks it with one SELECT (alembic's import alone
costs ~0.2 s of every CLI start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from metering.errors import DatabaseUnavailable
from metering.resources import migrations_dir

if TYPE_CHECKING:
    from alembic.config import Config

# The head of migrations/versions; tests/storage/test_migrations.py fails until a new
# revision updates it.
SCHEMA_REVISION = "0013"


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    assert head is not None, "migrations/ has no revisions"
    return head


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise DatabaseUnavailable(f"cannot open database {engine.url!r}: {exc.orig}") from None


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Apply migrations up to ``revision``; returns (before, after)."""
    from alembic import command

    before = current_revision(engine)
    command.upgrade(alembic_config(engine), revision)
    return before, current_revision(engine) or ""


def _is_at_schema_revision(engine: Engine) -> bool:
    """One SELECT, without alembic; any doubt (no table, no database) answers False."""
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            return list(stored) == [SCHEMA_REVISION]
    except DBAPIError:
        return False


def ensure_schema(engine: Engine) -> None:
    """Create the schema in an empty database; refuse to run against an outdated one."""
    if _is_at_schema_revision(engine):
        return
    current = current_revision(engine)
    head = head_revision(engine)
    if current is None:
        upgrade(engine)
    elif current != head:
        raise DatabaseUnavailable(
            f"the database schema is at revision {current}, this metering needs {head}: "
            "run `metering db upgrade`"
        )
