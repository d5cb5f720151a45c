"""``metering reconcile``: rollups and budget counters against the records; reported vs
computed cost differences, unpriced records and interrupted calls."""

from __future__ import annotations

import json
from typing import Any

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import format_option, render
from metering.core.money import format_usd
from metering.errors import MeteringError
from metering.operations.reports import reconcile_report
from metering.reports.reconcile import ReconcileReport


class ReconcileFailed(MeteringError):
    """The counters disagree with the records (or, with --strict, a cost needs attention)."""


# --format csv: one row per finding, its section first, with the columns of every section
# (a section's rows leave the others' empty), so the header never depends on the findings.
CSV_COLUMNS = (
    "section",  # rollup, budget_counter, cost_difference, unpriced, interrupted
    "problem",  # rollup and budget_counter rows
    "request_id",
    "started_at",
    "key",
    "provider",
    "model",
    "computed_cost",
    "reported_cost",
    "difference",
    "billed",
    "total_tokens",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "cost_source",
)


def _as_csv_rows(report: ReconcileReport) -> list[dict[str, Any]]:
    return [
        *({"section": "rollup", "problem": p} for p in report.rollup_problems),
        *({"section": "budget_counter", "problem": p} for p in report.budget_problems),
        *({"section": "cost_difference", **r} for r in report.differences),
        *({"section": "unpriced", **r} for r in report.unpriced),
        *({"section": "interrupted", **r} for r in report.interrupted),
    ]


def _print_table(report: ReconcileReport) -> None:
    if report.rollup_problems:
        click.echo(f"rollups: {len(report.rollup_problems)} disagreement(s) with the records")
        for line in report.rollup_problems:
            click.echo(f"  {line}")
    else:
        click.echo(f"rollups: OK ({report.rollup_rows} day row(s) equal their records)")
    if report.budget_problems:
        click.echo(f"budget counters: {len(report.budget_problems)} disagreement(s)")
        for line in report.budget_problems:
            click.echo(f"  {line}")
    else:
        click.echo("budget counters: OK")
    click.echo(
        f"reported vs computed cost: {report.difference_count} record(s) differ "
        f"(reported − computed: {format_usd(report.difference_sum)} USD)"
    )
    _listing(report.differences, report.difference_count)
    click.echo(f"unpriced records: {report.unpriced_count}")
    _listing(report.unpriced, report.unpriced_count)
    click.echo(
        f"interrupted calls: {report.interrupted_count} (their process died while they were "
        f"in flight; billed from an estimate: {format_usd(report.interrupted_sum)} USD)"
    )
    _listing(report.interrupted, report.interrupted_count)


def _listing(rows: list[dict[str, Any]], count: int) -> None:
    if rows:
        click.echo(render(rows, "table"))
        if count > len(rows):
            click.echo(f"… and {count - len(rows)} more")


@click.command(name="reconcile")
@click.option("--month", help="Only this calendar month (UTC), YYYY-MM [default: everything].")
@click.option(
    "--strict",
    is_flag=True,
    help="Also fail on cost differences, unpriced records and interrupted calls.",
)
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Records listed per section.")  # fmt: skip
@format_option
@pass_context
def reconcile_command(
    ctx: CliContext, month: str | None, strict: bool, limit: int, fmt: str
) -> None:
    """Check rollups and budget counters against the records (exit 1 when they disagree);
    list reported-vs-computed cost differences, unpriced records and interrupted calls.
    --format csv: one row per finding (at most --limit a section), its section first."""
    with ctx.engine().connect() as conn:
        outcome = reconcile_report(conn, month=month, strict=strict, limit=limit)
    report = outcome.report
    if fmt == "json":
        click.echo(json.dumps(outcome.as_json(), indent=2))
    elif fmt == "csv":
        click.echo(render(_as_csv_rows(report), "csv", columns=CSV_COLUMNS))
    else:
        _print_table(report)
    if report.problems:
        raise ReconcileFailed(
            f"reconcile failed: {len(report.problems)} counter(s) disagree with the records "
            "(listed above); rebuild them from the records or investigate the writer"
        )
    if report.failed(strict=strict):
        raise ReconcileFailed(
            f"reconcile --strict failed: {report.difference_count} cost difference(s), "
            f"{report.unpriced_count} unpriced record(s), {report.interrupted_count} "
            "interrupted call(s); `metering reprice` prices records once their model has a "
            "price, interrupted calls are matched with the provider's bill"
        )
