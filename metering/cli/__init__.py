"""The ``metering`` command: one module per noun, thin commands that parse, call, print.

The group knows every command's name and one-line help but imports a command's module
(and with it pandas, matplotlib, alembic, uvicorn…) only when that command runs, so
``metering spend`` does not pay for ``metering chart``'s imports.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import click

from metering.errors import MeteringError

# Kept equal to metering.config.DEFAULT_DATABASE_URL (tests/cli/test_lazy.py): importing
# the settings module would import pydantic-settings on every start.
DEFAULT_DATABASE_URL = "sqlite:///metering.db"


class LazyCommand(NamedTuple):
    module: str  # metering.cli.<module>
    attribute: str  # the click command in it
    help: str  # its short help, as `metering --help` lists it (checked by the tests)


COMMANDS: dict[str, LazyCommand] = {
    "admin": LazyCommand(
        "admin",
        "admin",
        "The admin HTTP API (/admin/v1/): its tokens (sk-adm-…); off until one exists.",
    ),
    "alerts": LazyCommand(
        "alerts",
        "alerts",
        "Webhooks told when a budget's spend crosses a threshold (delivered by serve).",
    ),
    "audit": LazyCommand(
        "audit",
        "audit",
        "Changes made through the CLI or the admin API, newest first: who, when, what, "
        "before → after.",
    ),
    "budgets": LazyCommand(
        "budgets",
        "budgets",
        "Budgets of keys, teams, customers, tags and end users (every applicable one must "
        "allow a request).",
    ),
    "chart": LazyCommand(
        "chart", "chart", "Daily spend of a month as stacked bars, titled, in USD, with a legend."
    ),
    "customers": LazyCommand("owners", "customers", "Customers: teams and keys may belong to one."),
    "db": LazyCommand("db", "db", "Database schema."),
    "demo": LazyCommand(
        "demo",
        "demo",
        "Run the whole pipeline locally: simulated upstream, proxy, keys, traffic, report.",
    ),
    "export": LazyCommand(
        "export", "export", "Write the month's cost CSV; amounts are decimal USD strings."
    ),
    "forecast": LazyCommand(
        "forecast",
        "forecast",
        "Each budget's projected spend at its period's end and the day its limit is reached.",
    ),
    "ingest": LazyCommand(
        "ingest",
        "ingest",
        "Backfill saved responses: one JSON object a line with key (name or id), timestamp "
        "(ISO-8601; UTC when no zone), response, and optional request_id and model.",
    ),
    "journal": LazyCommand(
        "journal",
        "journal",
        "Records journaled while the database could not take them, until they are replayed.",
    ),
    "keys": LazyCommand(
        "keys",
        "keys",
        "Virtual keys (sk-bf-…): the secret is shown once, only its hash is stored.",
    ),
    "prices": LazyCommand("prices", "prices", "Price sheets: import, list, show, quote."),
    "reconcile": LazyCommand(
        "reconcile",
        "reconcile_command",
        "Check rollups and budget counters against the records (exit 1 when they disagree); "
        "list reported-vs-computed cost differences, unpriced records and interrupted calls.",
    ),
    "reprice": LazyCommand(
        "reprice",
        "reprice_command",
        "Recompute records' costs with the price version in force at their time: fills "
        "unpriced records once their model has a price, applies corrected prices.",
    ),
    "serve": LazyCommand(
        "serve",
        "serve",
        "Run the metering proxy: authenticate, meter and forward completions upstream.",
    ),
    "teams": LazyCommand(
        "owners", "teams", "Teams: a key may belong to one, a team to a customer."
    ),
    "spend": LazyCommand(
        "spend", "spend", "Requests, errors, token sums and cost components (USD) per group."
    ),
}


class MeteringGroup(click.Group):
    """Loads a command's module on first use; turns domain errors into one clear line on
    stderr and exit status 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            lazy = COMMANDS[cmd_name]
            module = importlib.import_module(f"metering.cli.{lazy.module}")
            command = getattr(module, lazy.attribute)
            assert isinstance(command, click.Command)
            _accept_database_url(command)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, from the table above: listing the commands imports none of them."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            # A stand-in with the listed help gives click's own shortening of it.
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name].help)
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MeteringError as exc:
            raise click.ClickException(str(exc)) from None


def _accept_database_url(command: click.Command) -> None:
    """Every command takes ``--database-url`` after its name as well (one option, given by
    ``cli.context.database_url_option``), unless it has its own (``demo``)."""
    from metering.cli.context import database_url_option

    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_database_url(sub)
    elif not any("--database-url" in p.opts for p in command.params):
        database_url_option(command)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from metering import __version__

    click.echo(f"metering, version {__version__}")
    ctx.exit()


@click.group(cls=MeteringGroup)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
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
