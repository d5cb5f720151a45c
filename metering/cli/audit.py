"""``metering audit``: every change made through the CLI or the admin API."""

from __future__ import annotations

import json
from datetime import date

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.cli.params import DAY
from metering.operations.reports import audit_rows

AUDIT_COLUMNS = ("id", "at", "actor", "action", "target", "before", "after")


@click.command(name="audit")
@click.option("--actor", default=None, help="Only this actor (an admin token's name, or cli).")
@click.option("--action", default=None, help="Only this action, e.g. key.update.")
@click.option("--since", type=DAY, default=None, help="From this UTC day (YYYY-MM-DD).")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@format_option
@pass_context
def audit(
    ctx: CliContext,
    actor: str | None,
    action: str | None,
    since: date | None,
    limit: int,
    offset: int,
    fmt: str,
) -> None:
    """Changes made through the CLI or the admin API, newest first: who, when, what,
    before → after."""
    with ctx.engine().connect() as conn:
        rows = audit_rows(conn, actor=actor, action=action, since=since, limit=limit, offset=offset)
    if fmt != "json":  # one cell each: the states as compact JSON
        rows = [{**r, "before": _compact(r["before"]), "after": _compact(r["after"])} for r in rows]
    emit(rows, fmt, columns=AUDIT_COLUMNS)


def _compact(state: object) -> str | None:
    return None if state is None else json.dumps(state, sort_keys=True, separators=(",", ":"))
