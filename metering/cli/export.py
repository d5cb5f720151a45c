"""``metering export``: the monthly cost CSV (summary or per request)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, cast

import click

from metering.cli.context import CliContext, pass_context
from metering.core.money import format_usd
from metering.reports.common import parse_month
from metering.reports.export import count_rows, write_export


@click.command(name="export")
@click.option("--month", required=True, help="Calendar month (UTC), YYYY-MM.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV path [default: reports/costs-YYYY-MM.csv, or …-requests.csv].",
)
@click.option(
    "--detail",
    type=click.Choice(["summary", "requests"]),
    default="summary",
    show_default=True,
    help="summary: one row per key × provider × model; requests: one row per request.",
)
@pass_context
def export(ctx: CliContext, month: str, out: Path | None, detail: str) -> None:
    """Write the month's cost CSV; amounts are decimal USD strings."""
    level = cast(Literal["summary", "requests"], detail)
    parse_month(month)  # a bad month is reported before the database is opened
    with ctx.engine().connect() as conn:
        if sys.stderr.isatty():
            total = count_rows(conn, month, level)
            with click.progressbar(
                length=total, label=f"exporting {month}", file=sys.stderr
            ) as bar:
                result = write_export(conn, month=month, detail=level, out=out, progress=bar.update)
        else:
            result = write_export(conn, month=month, detail=level, out=out)
    click.echo(
        f"wrote {result.rows} row(s) to {result.path} "
        f"(total {format_usd(result.totals['total_cost'])} USD)"
    )
