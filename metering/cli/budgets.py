"""``metering budgets``: set a key's, team's or customer's budget; list them all (the
rules: ``operations.budgets``)."""

from __future__ import annotations

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.operations.budgets import budget_rows, remove_budget_op, select_budget, set_budget_op
from metering.storage.audit import CLI_ACTOR

LIST_COLUMNS = (
    "owner_type",
    "owner",
    "limit",
    "period",
    "timezone",
    "spent",
    "reserved",
    "remaining",
    "period_start",
    "next_reset",
    "soft_limit_crossed",
    "forecast",
    "limit_reached_on",
    "daily_rate",
    "forecast_basis",
    "model",
    "scope",
)


@click.group(name="budgets")
def budgets() -> None:
    """Budgets of keys, teams, customers, tags and end users (every applicable one must
    allow a request)."""


@budgets.command(name="set")
@click.option("--key", default=None, help="Virtual key (name or id).")
@click.option("--team", default=None, help="Team (name or id).")
@click.option("--customer", default=None, help="Customer (name or id).")
@click.option("--tag", default=None, help="A request tag (x-metering-tags or a key's --tag).")
@click.option(
    "--end-user",
    default=None,
    help="An end-user id (the `user` your application sends), with --customer C or --key K.",
)
@click.option(
    "--each-end-user",
    is_flag=True,
    help="The default budget every end user of --customer C (or --key K) gets on first use.",
)
@click.option(
    "--model",
    default=None,
    help="Narrow the budget to models matching this pattern, e.g. 'openai/gpt-4o*' "
    "(matched against the model that served each request).",
)
@click.option("--limit", "limit", required=True, help="Hard limit in USD per period, e.g. 25.50.")
@click.option(
    "--period",
    required=True,
    help="daily, weekly (Monday), monthly (1st), yearly, Nh / Nd (rolling), or never.",
)
@click.option(
    "--soft",
    type=click.IntRange(min=1, max=100),
    default=None,
    help="Soft limit, % of the limit: requests pass, the first crossing is recorded.",
)
@click.option(
    "--timezone",
    default="UTC",
    show_default=True,
    help="IANA zone whose midnight starts days, weeks, months and years.",
)
@click.option(
    "--allow-zero", is_flag=True, help="Accept a zero limit (every priced request is refused)."
)
@format_option
@pass_context
def budgets_set(
    ctx: CliContext,
    key: str | None,
    team: str | None,
    customer: str | None,
    tag: str | None,
    end_user: str | None,
    each_end_user: bool,
    model: str | None,
    limit: str,
    period: str,
    soft: int | None,
    timezone: str,
    allow_zero: bool,
    fmt: str,
) -> None:
    """Create or change the budget of one key, team, customer, tag or end user, or the
    default budget of a customer's end users."""
    it = select_budget(key=key, team=team, customer=customer, tag=tag, end_user=end_user,
                       each_end_user=each_end_user)  # fmt: skip
    with ctx.engine().begin() as conn:
        row = set_budget_op(
            conn,
            owner_type=it.owner_type,
            owner=it.owner,
            scope_type=it.scope_type,
            scope=it.scope,
            limit=limit,
            period=period,
            soft=soft,
            timezone=timezone,
            allow_zero=allow_zero,
            model=model,
            actor=CLI_ACTOR,
        )
    emit([row], fmt, columns=LIST_COLUMNS)


@budgets.command(name="list")
@format_option
@pass_context
def budgets_list(ctx: CliContext, fmt: str) -> None:
    """Every budget: limit, spent, reserved, remaining, current period and next reset."""
    with ctx.engine().connect() as conn:
        rows = budget_rows(conn)
    emit(rows, fmt, columns=LIST_COLUMNS)


@budgets.command(name="remove")
@click.option("--key", default=None, help="Virtual key (name or id).")
@click.option("--team", default=None, help="Team (name or id).")
@click.option("--customer", default=None, help="Customer (name or id).")
@click.option("--tag", default=None, help="A request tag (x-metering-tags or a key's --tag).")
@click.option(
    "--end-user",
    default=None,
    help="An end-user id (the `user` your application sends), with --customer C or --key K.",
)
@click.option(
    "--each-end-user",
    is_flag=True,
    help="The default budget every end user of --customer C (or --key K) gets on first use.",
)
@click.option("--model", default=None, help="The budget narrowed to this model pattern.")
@pass_context
def budgets_remove(
    ctx: CliContext,
    key: str | None,
    team: str | None,
    customer: str | None,
    tag: str | None,
    end_user: str | None,
    each_end_user: bool,
    model: str | None,
) -> None:
    """Remove the budget of one key, team or customer (refused while requests hold
    reservations in it); its records and their costs stay."""
    it = select_budget(key=key, team=team, customer=customer, tag=tag, end_user=end_user,
                       each_end_user=each_end_user)  # fmt: skip
    with ctx.engine().begin() as conn:
        removed = remove_budget_op(
            conn,
            owner_type=it.owner_type,
            owner=it.owner,
            scope_type=it.scope_type,
            scope=it.scope,
            model=model,
            actor=CLI_ACTOR,
        )
    click.echo(f"removed the budget of {removed.words}")
