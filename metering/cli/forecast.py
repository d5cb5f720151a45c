"""``metering forecast``: every budget's projected spend at the end of its period and the
day its limit would be reached at the current rate (``core.forecast``)."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.errors import InvalidInput
from metering.storage.budgets import budget_status
from metering.storage.keys import find_key, team_customer
from metering.storage.owners import find_owner

COLUMNS = (
    "owner_type",
    "owner",
    "period",
    "limit",
    "spent",
    "forecast",
    "limit_reached_on",
    "daily_rate",
    "forecast_basis",
    "next_reset",
)


@click.command(name="forecast")
@click.option("--key", default=None, help="Only the budgets a key's requests count against.")
@click.option("--team", default=None, help="Only a team's budget and its customer's.")
@click.option("--customer", default=None, help="Only a customer's budget.")
@format_option
@pass_context
def forecast(
    ctx: CliContext, key: str | None, team: str | None, customer: str | None, fmt: str
) -> None:
    """Each budget's projected spend at its period's end and the day its limit is reached.

    At the current rate (README, Forecasts); --key shows the budgets a key's requests
    count against (its own, its team's, its customer's)."""
    if sum(ref is not None for ref in (key, team, customer)) > 1:
        raise InvalidInput("name at most one of --key, --team, --customer")
    now = datetime.now(UTC).replace(tzinfo=None)
    with ctx.engine().connect() as conn:
        if key is not None:
            info = find_key(conn, key)
            statuses = budget_status(
                conn, now=now, key_id=info.id, team_id=info.team_id, customer_id=info.customer_id
            )
        elif team is not None:
            team_id, _ = find_owner(conn, "team", team)
            statuses = budget_status(
                conn, now=now, team_id=team_id, customer_id=team_customer(conn, team_id)
            )
        elif customer is not None:
            customer_id, _ = find_owner(conn, "customer", customer)
            statuses = budget_status(conn, now=now, customer_id=customer_id)
        else:
            statuses = budget_status(conn, now=now)
    emit([s.as_dict() for s in statuses], fmt, columns=COLUMNS)
