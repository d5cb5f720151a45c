"""``metering spend``: spend per key, team, customer, provider, model, day, month, end
user or tag."""

from __future__ import annotations

from datetime import date
from typing import Any

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.cli.params import DAY
from metering.operations.reports import spend_report
from metering.reports.spend import (
    METRIC_COLUMNS,
    TAG_OVERLAP_NOTE,
    format_metrics,
    group_columns,
    spend_totals,
)


@click.command(name="spend")
@click.option(
    "--by",
    default="key",
    show_default=True,
    help="Group by any of key,team,customer,provider,model,day,month,end_user,tag "
    "(comma-separated).",
)
@click.option("--since", type=DAY, help="First UTC day included (YYYY-MM-DD).")
@click.option("--until", type=DAY, help="Last UTC day included (YYYY-MM-DD); the whole day counts.")
@click.option("--key", "key", help="Only this virtual key (name or id).")
@click.option("--provider", help="Only this (serving) provider.")
@click.option("--model", help="Only this (serving) model: name or provider/model.")
@click.option("--tag", help="Only requests carrying this tag (e.g. feature=rag).")
@click.option("--end-user", "end_user", help="Only this end-user id (of every customer).")
@format_option
@pass_context
def spend(
    ctx: CliContext,
    by: str,
    since: date | None,
    until: date | None,
    key: str | None,
    provider: str | None,
    model: str | None,
    tag: str | None,
    end_user: str | None,
    fmt: str,
) -> None:
    """Requests, errors, token sums and cost components (USD) per group.

    Days are UTC; --since and --until are both inclusive, so
    `--since 2026-11-01 --until 2026-11-30` is all of November. A request with
    several tags counts in each tag's group (tag groups may add up to more than
    the grand total).
    """
    with ctx.engine().connect() as conn:
        report = spend_report(
            conn,
            by=by,
            since=since,
            until=until,
            key=key,
            provider=provider,
            model=model,
            tag=tag,
            end_user=end_user,
        )
    group_by, groups, rows = report.group_by, report.groups, report.rows
    shown = group_columns(group_by)
    columns = [*shown, *METRIC_COLUMNS]
    if fmt != "table" or not group_by:
        emit(rows, fmt, columns=columns)
        return
    footer: dict[str, Any] = format_metrics(spend_totals(groups))
    overlap = "tag" in group_by
    footer[shown[0]] = "SUM OF GROUPS*" if overlap else "TOTAL"
    emit(rows, fmt, columns=columns, footer=footer)
    if overlap:
        click.echo(f"* {TAG_OVERLAP_NOTE}")
