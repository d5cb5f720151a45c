"""``metering chart``: a month's daily spend as a stacked bar chart (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import click

from metering.cli.context import CliContext, pass_context
from metering.reports.chart import ChartBy, chart_month, unpriced_in
from metering.reports.common import parse_month


@click.command(name="chart")
@click.option("--month", required=True, help="Calendar month (UTC), YYYY-MM.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="PNG path [default: reports/spend-YYYY-MM.png].",
)
@click.option(
    "--by",
    type=click.Choice(["provider", "model", "key"]),
    default="provider",
    show_default=True,
    help="One bar segment per provider, model or key.",
)
@pass_context
def chart(ctx: CliContext, month: str, out: Path | None, by: str) -> None:
    """Daily spend of a month as stacked bars, titled, in USD, with a legend."""
    parse_month(month)  # a bad month is reported before the database is opened
    with ctx.engine().connect() as conn:
        path, frame = chart_month(
            conn, month=month, by=cast(ChartBy, by), out=out, create_folder=out is None
        )
        unpriced = unpriced_in(conn, parse_month(month))
    click.echo(f"wrote {path} ({len(frame.columns)} series, {len(frame.index)} days)")
    if unpriced:
        click.echo(
            f"! {unpriced} request(s) without a price are counted as $0 (metering reconcile "
            "lists them; metering reprice bills them once a price exists)"
        )
