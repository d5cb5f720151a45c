"""``metering reprice``: recompute stored costs after a price was added or corrected."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from typing import Any

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.cli.params import DAY
from metering.core.money import format_usd
from metering.reports.common import DayWindow
from metering.reports.reprice import RepriceResult, count_candidates, reprice
from metering.storage.audit import CLI_ACTOR


def _rows(result: RepriceResult) -> list[dict[str, Any]]:
    return [
        {
            "provider": provider,
            "model": model,
            "records": change.records,
            "old_total_cost": format_usd(change.old_total),
            "new_total_cost": format_usd(change.new_total),
            "difference": format_usd(change.new_total - change.old_total),
        }
        for (provider, model), change in sorted(result.by_model.items())
    ]


@click.command(name="reprice")
@click.option("--since", type=DAY, help="First UTC day of records repriced (YYYY-MM-DD).")
@click.option("--until", type=DAY, help="Last UTC day of records repriced, inclusive.")
@click.option("--dry-run", is_flag=True, help="Show the effect; change nothing.")
@format_option
@pass_context
def reprice_command(
    ctx: CliContext,
    since: date | None,
    until: date | None,
    dry_run: bool,
    fmt: str,
) -> None:
    """Recompute records' costs with the price version in force at their time: fills
    unpriced records once their model has a price, applies corrected prices. Rollups and
    the budgets' current periods follow; every change gets an audit row."""
    window = DayWindow(since, until)
    now = datetime.now(UTC).replace(tzinfo=None)
    engine = ctx.engine()
    if sys.stderr.isatty():
        with engine.connect() as conn:
            total = count_candidates(conn, window)
        with click.progressbar(length=total, label="repricing", file=sys.stderr) as bar:
            result = reprice(
                engine,
                window=window,
                now=now,
                dry_run=dry_run,
                progress=bar.update,
                actor=CLI_ACTOR,
            )
    else:
        result = reprice(engine, window=window, now=now, dry_run=dry_run, actor=CLI_ACTOR)
    rows = _rows(result)
    if fmt != "table":
        emit(rows, fmt)
        return
    verb = "would change" if dry_run else "changed"
    click.echo(
        f"examined {result.examined} record(s); {verb} {result.changed} "
        f"({result.newly_priced} previously unpriced)"
    )
    if rows:
        footer = {
            "provider": "TOTAL",
            "records": result.changed,
            "old_total_cost": format_usd(result.old_total),
            "new_total_cost": format_usd(result.new_total),
            "difference": format_usd(result.new_total - result.old_total),
        }
        emit(rows, fmt, footer=footer)
    for line in result.budget_changes:
        click.echo(f"budget: {line}")
    if dry_run:
        click.echo("dry run: nothing was changed")
    elif result.changed:
        click.echo(f"audit run id {result.run_id} ({result.changed} row(s) in reprice_audits)")
