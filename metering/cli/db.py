"""``metering db``: schema migrations."""

from __future__ import annotations

import click

from metering.cli.context import CliContext, pass_context
from metering.resources import pricing_dir
from metering.storage.audit import CLI_ACTOR, record_change
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
        synced = sync_shipped_sheets(engine)
        if before != after or synced.added:
            with engine.begin() as conn:
                record_change(
                    conn,
                    actor=CLI_ACTOR,
                    action="db.upgrade",
                    target="database",
                    before={"revision": before},
                    after={"revision": after, "price_versions_added": len(synced.added)},
                )
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"database already at revision {after}")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to revision {after}")
    if synced.added:
        click.echo(f"added {len(synced.added)} shipped price version(s)")
    if synced.conflicts:
        # e.g. a rate a newer sheet adds to a version this database stored before
        first = synced.conflicts[0]
        sheet = pricing_dir() / first.source.removeprefix("sheet:")
        click.echo(
            f"kept {len(synced.conflicts)} stored price version(s) that differ from the shipped "
            f"ones of the same date (first: {first.key} effective {first.effective_from}); "
            f"`metering prices import {sheet} --replace` takes the shipped ones"
        )
