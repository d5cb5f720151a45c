"""``metering db``: schema migrations."""

from __future__ import annotations

import click

from metering.cli.context import CliContext, pass_context
from metering.storage.engine import make_engine
from metering.storage.migrate import upgrade
from metering.storage.prices import sync_shipped_sheets


@click.group(name="db")
def db() -> None:
    """Database schema."""


@db.command(name="upgrade")
@pass_context
def db_upgrade(ctx: CliContext) -> None:
    """Migrate the database to the current schema in place (rows are kept)."""
    engine = make_engine(ctx.database_url)
    try:
        before, after = upgrade(engine)
        added = sync_shipped_sheets(engine).added
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"database already at revision {after}")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to revision {after}")
    if added:
        click.echo(f"added {len(added)} shipped price version(s)")
