"""``metering demo``: simulated upstream, real proxy, keys, traffic, spend table, CSV."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from metering.cli.output import emit, format_option

# The table shows the essentials; JSON and CSV carry every column of `metering spend`.
TABLE_COLUMNS = (
    "provider",
    "model",
    "requests",
    "errors",
    "prompt_tokens",
    "cached_read_tokens",
    "cached_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "search_queries",
    "total_cost",
)


@click.command(name="demo")
@click.option(
    "--database-url",
    "demo_database_url",
    default=None,
    help="Database to fill (default: a temporary SQLite file, deleted afterwards).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Requests CSV, as `metering export --detail requests` writes it "
    "(default: reports/demo-<timestamp>.csv).",
)
@format_option
def demo(demo_database_url: str | None, out: Path | None, fmt: str) -> None:
    """Run the whole pipeline locally: simulated upstream, proxy, keys, traffic, report."""
    from metering.demo import run_demo

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = out or Path("reports") / f"demo-{stamp}.csv"
    result = run_demo(
        database_url=demo_database_url, out=out, say=lambda line: click.echo(line, err=True)
    )
    if fmt != "table":
        emit(result.spend, fmt)
    else:
        total: dict[str, object] = {"provider": "TOTAL", "total_cost": result.total_cost}
        for column in TABLE_COLUMNS[2:-1]:
            total[column] = sum(int(row[column]) for row in result.spend)
        emit(result.spend, fmt, columns=TABLE_COLUMNS, footer=total)
        click.echo("(every token and cost column: --format json or csv)", err=True)
    click.echo(f"requests CSV: {result.csv_path}", err=True)
