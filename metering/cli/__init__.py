"""The ``metering`` command: one module per noun, thin commands that parse, call, print."""

from __future__ import annotations

from typing import Any

import click

from metering import __version__
from metering.config import DEFAULT_DATABASE_URL
from metering.errors import MeteringError


class MeteringGroup(click.Group):
    """Turns domain errors into one clear line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MeteringError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=MeteringGroup)
@click.version_option(__version__, prog_name="metering")
@click.option(
    "--database-url",
    envvar="METERING_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help="SQLAlchemy URL of the metering database [env: METERING_DATABASE_URL].",
)
@click.pass_context
def main(ctx: click.Context, database_url: str) -> None:
    """Usage metering and cost accounting for LLM gateway traffic."""
    from metering.cli.context import CliContext

    obj = CliContext(database_url=database_url)
    ctx.obj = obj
    ctx.call_on_close(obj.close)


def _register() -> None:
    from metering.cli import budgets as budgets_cli
    from metering.cli import (
        chart,
        db,
        demo,
        export,
        ingest,
        keys,
        prices,
        reconcile,
        reprice,
        serve,
        spend,
    )

    main.add_command(db.db)
    main.add_command(prices.prices)
    main.add_command(spend.spend)
    main.add_command(export.export)
    main.add_command(chart.chart)
    main.add_command(reconcile.reconcile_command)
    main.add_command(reprice.reprice_command)
    main.add_command(ingest.ingest)
    main.add_command(keys.keys)
    main.add_command(serve.serve)
    main.add_command(demo.demo)
    main.add_command(budgets_cli.budgets)


_register()
