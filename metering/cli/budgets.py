"""``metering budgets``: set a key's, team's or customer's budget; list them all."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.core.bounds import parse_limit
from metering.core.model_patterns import check_model_pattern
from metering.errors import InvalidInput
from metering.storage.budgets import budget_status, remove_budget, set_budget
from metering.storage.owners import find_owner

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
)


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def limit_from_option(text: str, *, option: str, allow_zero: bool) -> int:
    """A limit typed at ``option`` → nano-USD; a zero limit only with ``--allow-zero``."""
    limit_nano = parse_limit(text)
    if limit_nano == 0 and not allow_zero:
        raise InvalidInput(
            f"{option} {text} would block every priced request; add --allow-zero to set a "
            "zero limit on purpose, or give a positive amount"
        )
    return limit_nano


def model_option(pattern: str | None) -> str:
    """``--model``: absent = the budget of every model (''); given, a valid pattern."""
    return "" if pattern is None else check_model_pattern(pattern, option="--model")


@click.group(name="budgets")
def budgets() -> None:
    """Budgets of keys, teams and customers (every applicable one must allow a request)."""


def _one_owner(key: str | None, team: str | None, customer: str | None) -> tuple[str, str]:
    owners = [(kind, ref) for kind, ref in (("key", key), ("team", team), ("customer", customer))]
    given = [(kind, ref) for kind, ref in owners if ref is not None]
    if len(given) != 1:
        raise InvalidInput("name exactly one budget owner: --key K, --team T or --customer C")
    return given[0]


@budgets.command(name="set")
@click.option("--key", default=None, help="Virtual key (name or id).")
@click.option("--team", default=None, help="Team (name or id).")
@click.option("--customer", default=None, help="Customer (name or id).")
@click.option(
    "--model",
    "model_pattern",
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
    model_pattern: str | None,
    limit: str,
    period: str,
    soft: int | None,
    timezone: str,
    allow_zero: bool,
    fmt: str,
) -> None:
    """Create or change the budget of one key, team or customer."""
    owner_type, ref = _one_owner(key, team, customer)
    pattern = model_option(model_pattern)
    limit_nano = limit_from_option(limit, option="--limit", allow_zero=allow_zero)
    with ctx.engine().begin() as conn:
        owner_id, _ = find_owner(conn, owner_type, ref)
        status = set_budget(
            conn,
            owner_type=owner_type,
            owner_id=owner_id,
            limit_nano=limit_nano,
            period=period,
            timezone=timezone,
            soft_pct=soft,
            model_pattern=pattern,
            now=_utcnow(),
        )
    emit([status.as_dict()], fmt, columns=LIST_COLUMNS)


@budgets.command(name="list")
@format_option
@pass_context
def budgets_list(ctx: CliContext, fmt: str) -> None:
    """Every budget: limit, spent, reserved, remaining, current period and next reset."""
    with ctx.engine().connect() as conn:
        rows = [s.as_dict() for s in budget_status(conn, now=_utcnow())]
    emit(rows, fmt, columns=LIST_COLUMNS)


@budgets.command(name="remove")
@click.option("--key", default=None, help="Virtual key (name or id).")
@click.option("--team", default=None, help="Team (name or id).")
@click.option("--customer", default=None, help="Customer (name or id).")
@click.option(
    "--model", "model_pattern", default=None, help="The budget narrowed to this model pattern."
)
@pass_context
def budgets_remove(
    ctx: CliContext,
    key: str | None,
    team: str | None,
    customer: str | None,
    model_pattern: str | None,
) -> None:
    """Remove the budget of one key, team or customer (refused while requests hold
    reservations in it); its records and their costs stay."""
    owner_type, ref = _one_owner(key, team, customer)
    pattern = model_option(model_pattern)
    with ctx.engine().begin() as conn:
        owner_id, name = find_owner(conn, owner_type, ref)
        remove_budget(
            conn,
            owner_type=owner_type,
            owner_id=owner_id,
            owner_name=name,
            model_pattern=pattern,
        )
    narrowed = f" for models {pattern!r}" if pattern else ""
    click.echo(f"removed the budget of {owner_type} {name!r}{narrowed}")
