"""``metering teams`` and ``metering customers``: create and list them (keys and budgets
name them; ``keys create --team`` also creates one on demand)."""

from __future__ import annotations

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.operations.owners import (
    create_customer_op,
    create_team_op,
    customer_rows,
    team_rows,
)
from metering.storage.audit import CLI_ACTOR

TEAM_COLUMNS = ("id", "name", "customer", "keys", "created_at")
CUSTOMER_COLUMNS = ("id", "name", "teams", "keys", "created_at")


@click.group(name="teams")
def teams() -> None:
    """Teams: a key may belong to one, a team to a customer."""


@teams.command(name="create")
@click.argument("name")
@click.option("--customer", default=None, help="The team's customer (name or id).")
@format_option
@pass_context
def teams_create(ctx: CliContext, name: str, customer: str | None, fmt: str) -> None:
    """Create a team NAME."""
    with ctx.engine().begin() as conn:
        row = create_team_op(conn, name=name, customer=customer, actor=CLI_ACTOR)
    emit([row], fmt, columns=TEAM_COLUMNS)


@teams.command(name="list")
@format_option
@pass_context
def teams_list(ctx: CliContext, fmt: str) -> None:
    """Every team, its customer and how many keys it has."""
    with ctx.engine().connect() as conn:
        rows = team_rows(conn)
    emit(rows, fmt, columns=TEAM_COLUMNS)


@click.group(name="customers")
def customers() -> None:
    """Customers: teams and keys may belong to one."""


@customers.command(name="create")
@click.argument("name")
@format_option
@pass_context
def customers_create(ctx: CliContext, name: str, fmt: str) -> None:
    """Create a customer NAME."""
    with ctx.engine().begin() as conn:
        row = create_customer_op(conn, name=name, actor=CLI_ACTOR)
    emit([row], fmt, columns=CUSTOMER_COLUMNS)


@customers.command(name="list")
@format_option
@pass_context
def customers_list(ctx: CliContext, fmt: str) -> None:
    """Every customer, with how many teams and keys it has."""
    with ctx.engine().connect() as conn:
        rows = customer_rows(conn)
    emit(rows, fmt, columns=CUSTOMER_COLUMNS)
