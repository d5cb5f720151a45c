"""``metering demo``: simulated upstream, real proxy, keys, traffic, spend table, CSV."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from metering.cli.output import emit, format_option


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
    help="Per-request CSV (default: reports/demo-<timestamp>.csv).",
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
    total = {"provider": "total", "total_cost": result.total_cost}
    total["requests"] = str(sum(row["requests"] for row in result.spend))
    emit(result.spend, fmt, footer=total if fmt == "table" else None)
    click.echo(f"per-request CSV: {result.csv_path}", err=True)
