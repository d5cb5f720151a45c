"""``metering alerts``: webhooks told when a budget's spend crosses its thresholds
(README, Budget alerts): add, list, remove, test, history."""

from __future__ import annotations

import asyncio
import json

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.core.alerts import PAYLOADS, format_thresholds
from metering.errors import MeteringError
from metering.operations.alerts import add_alert_op, remove_alert_op
from metering.operations.budgets import one_owner
from metering.storage.alerts import (
    add_test_event,
    alert_history,
    claim_due,
    list_alerts,
    new_secret,
)
from metering.storage.audit import CLI_ACTOR
from metering.storage.keys import utcnow

LIST_COLUMNS = ("id", "owner_type", "owner", "url", "at", "payload", "forecast", "created_at")
HISTORY_COLUMNS = (
    "alert_id",
    "event_id",
    "kind",
    "threshold",
    "spent",
    "limit",
    "forecast",
    "period_start",
    "created_at",
    "status",
    "attempts",
    "delivered_at",
    "last_status",
    "last_error",
)


@click.group(name="alerts")
def alerts() -> None:
    """Webhooks told when a budget's spend crosses a threshold (delivered by serve)."""


@alerts.command(name="add")
@click.option("--url", required=True, help="Webhook URL (http or https) to POST events to.")
@click.option("--key", default=None, help="Virtual key (name or id) whose budget to watch.")
@click.option("--team", default=None, help="Team (name or id) whose budget to watch.")
@click.option("--customer", default=None, help="Customer (name or id) whose budget to watch.")
@click.option(
    "--model",
    default=None,
    help="The owner's budget narrowed to this model pattern (budgets set --model).",
)
@click.option(
    "--at",
    "at",
    default=format_thresholds((50, 80, 100)),
    show_default=True,
    help="Thresholds, % of the limit, comma-separated (100: the hard limit).",
)
@click.option(
    "--payload",
    type=click.Choice(PAYLOADS),
    default="json",
    show_default=True,
    help='Body: the event as JSON, or Slack\'s {"text": …}.',
)
@click.option(
    "--forecast",
    is_flag=True,
    help="Also tell when the period is on course to pass the limit (linear, from 10 % in).",
)
@click.option("--secret", default=None, help="HMAC-SHA256 signing secret (default: generated).")
@format_option
@pass_context
def alerts_add(
    ctx: CliContext,
    url: str,
    key: str | None,
    team: str | None,
    customer: str | None,
    model: str | None,
    at: str,
    payload: str,
    forecast: bool,
    secret: str | None,
    fmt: str,
) -> None:
    """Watch the budget of one key, team or customer."""
    one_owner(key, team, customer)  # before a secret is made
    signing = secret if secret is not None else new_secret()
    with ctx.engine().begin() as conn:
        alert_id, owner_type, name = add_alert_op(
            conn,
            key=key,
            team=team,
            customer=customer,
            url=url,
            thresholds=at,
            payload=payload,
            secret=signing,
            forecast=forecast,
            model=model,
            actor=CLI_ACTOR,
        )
    shown = {"id": alert_id} | ({"secret": signing} if secret is None else {})
    if fmt == "json":
        click.echo(json.dumps(shown))
        return
    if fmt == "csv":
        emit([shown], fmt)
        return
    also = ", and a forecast" if forecast else ""
    click.echo(
        f"alert {alert_id}: {owner_type} {name!r}'s budget at {at} %{also} → {url} ({payload})"
    )
    if secret is None:
        click.echo(f"signing secret (shown once): {signing}")


@alerts.command(name="list")
@format_option
@pass_context
def alerts_list(ctx: CliContext, fmt: str) -> None:
    """Every alert: its budget's owner, URL, thresholds and payload (never its secret)."""
    with ctx.engine().connect() as conn:
        rows = [a.as_dict() for a in list_alerts(conn)]
    emit(rows, fmt, columns=LIST_COLUMNS)


@alerts.command(name="remove")
@click.argument("alert_id", type=int)
@pass_context
def alerts_remove(ctx: CliContext, alert_id: int) -> None:
    """Delete an alert and its events."""
    with ctx.engine().begin() as conn:
        remove_alert_op(conn, alert_id, actor=CLI_ACTOR)
    click.echo(f"removed alert {alert_id}")


@alerts.command(name="test")
@click.argument("alert_id", type=int)
@pass_context
def alerts_test(ctx: CliContext, alert_id: int) -> None:
    """Send a test event now (one attempt; exit 1 if the receiver did not take it)."""
    from metering.gateway.alert_delivery import AlertDeliverer

    engine = ctx.engine()
    deliverer = AlertDeliverer(engine)
    now = utcnow()
    with engine.begin() as conn:  # claimed as it is written: a running server skips it
        event_id = add_test_event(conn, alert_id, now=now)
        lease = deliverer.lease_seconds
        claimed = claim_due(conn, now=now, lease_seconds=lease, event_ids=[event_id])

    async def send() -> int:
        try:
            return await deliverer.send_claimed(claimed)
        finally:
            await deliverer.stop()

    delivered = asyncio.run(send())
    with engine.connect() as conn:
        (event,) = [e for e in alert_history(conn, alert_id=alert_id) if e["event_id"] == event_id]
    if not delivered:
        raise MeteringError(f"test event {event_id} not delivered: {event['last_error']}")
    click.echo(f"delivered test event {event_id} (HTTP {event['last_status']})")


@alerts.command(name="history")
@click.argument("alert_id", type=int, required=False)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@format_option
@pass_context
def alerts_history(ctx: CliContext, alert_id: int | None, limit: int, fmt: str) -> None:
    """The latest events, newest first: threshold, spend, delivery status and attempts."""
    with ctx.engine().connect() as conn:
        rows = alert_history(conn, alert_id=alert_id, limit=limit)
    emit(rows, fmt, columns=HISTORY_COLUMNS)
