"""``metering export``: the monthly cost file: our CSV (summary or per request) or FOCUS."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, cast

import click

from metering.cli.context import CliContext, pass_context
from metering.core.money import format_usd
from metering.errors import InvalidInput
from metering.reports.common import NO_FILTER, AttributionFilter, parse_month
from metering.reports.export import count_rows, write_export
from metering.reports.focus_file import write_focus


@click.command(name="export")
@click.option("--month", required=True, help="Calendar month (UTC), YYYY-MM.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File path, in an existing folder [default: reports/costs-YYYY-MM.csv, "
    "…-requests.csv, or reports/focus-YYYY-MM.csv]. FOCUS: .parquet writes Parquet.",
)
@click.option(
    "--format",
    "file_format",
    type=click.Choice(["csv", "focus"]),
    default="csv",
    show_default=True,
    help="csv: our columns (see --detail); focus: FinOps FOCUS 1.0 rows, one per charge.",
)
@click.option(
    "--detail",
    type=click.Choice(["summary", "requests"]),
    default=None,
    help="csv only. summary (default): one row per key × provider × model; "
    "requests: one row per request.",
)
@click.option("--tag", help="csv only: only requests carrying this tag (e.g. feature=rag).")
@click.option("--end-user", "end_user", help="csv only: only this end-user id (every scope's).")
@pass_context
def export(
    ctx: CliContext,
    month: str,
    out: Path | None,
    file_format: str,
    detail: str | None,
    tag: str | None,
    end_user: str | None,
) -> None:
    """Write the month's cost CSV; amounts are decimal USD strings."""
    parse_month(month)  # a bad month is reported before the database is opened
    filters = AttributionFilter(tag=tag, end_user=end_user)
    if file_format == "focus":
        if detail is not None:
            raise InvalidInput("--detail applies to --format csv; FOCUS has one row per charge")
        if filters != NO_FILTER:
            raise InvalidInput("--tag and --end-user apply to --format csv (FOCUS: the month)")
        with ctx.engine().connect() as conn:
            focus = write_focus(conn, month=month, out=out, create_folder=out is None)
        click.echo(
            f"wrote {focus.rows} FOCUS row(s) to {focus.path} "
            f"(total {format_usd(focus.billed)} USD)"
        )
        return
    level = cast(Literal["summary", "requests"], detail or "summary")
    create_folder = out is None  # a user's --out goes into an existing folder only
    with ctx.engine().connect() as conn:
        if sys.stderr.isatty():
            total = count_rows(conn, month, level, filters)
            with click.progressbar(
                length=total, label=f"exporting {month}", file=sys.stderr
            ) as bar:
                result = write_export(
                    conn,
                    month=month,
                    detail=level,
                    out=out,
                    progress=bar.update,
                    create_folder=create_folder,
                    filters=filters,
                )
        else:
            result = write_export(
                conn,
                month=month,
                detail=level,
                out=out,
                create_folder=create_folder,
                filters=filters,
            )
    click.echo(
        f"wrote {result.rows} row(s) to {result.path} "
        f"(total {format_usd(result.totals['total_cost'])} USD)"
    )
