"""``metering keys``: virtual keys (create, list, show, disable, enable)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from metering.cli.budgets import limit_from_option
from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.cli.params import missing_day
from metering.core.model_patterns import check_model_pattern
from metering.core.periods import parse_period, parse_timezone
from metering.errors import InvalidInput
from metering.storage.budgets import set_budget
from metering.storage.keys import create_key, find_key, list_keys, set_key_enabled

LIST_COLUMNS = (
    "id",
    "name",
    "prefix",
    "team",
    "customer",
    "models",
    "rpm",
    "tpm",
    "status",
    "expires_at",
    "created_at",
)


def parse_expiry(value: str | None, *, now: datetime) -> datetime | None:
    """``2025-12-31`` (the key stops working at 00:00 UTC that day) or an ISO date-time
    (with an offset, or UTC) → naive UTC, after ``now`` (naive UTC)."""
    if value is None:
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        problem = missing_day(text[:10])
        if problem is not None:
            raise InvalidInput(f"--expires {problem}") from None
        raise InvalidInput(
            f"--expires {value!r} is not a date (YYYY-MM-DD) or ISO date-time"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if moment <= now:
        raise InvalidInput(
            f"--expires {text} is in the past (now {now.isoformat(timespec='seconds')}Z): "
            "the key would never work"
        )
    return moment


@click.group(name="keys")
def keys() -> None:
    """Virtual keys (sk-bf-…): the secret is shown once, only its hash is stored."""


@keys.command(name="create")
@click.argument("name")
@click.option("--team", default=None, help="Team (name or id); created if new.")
@click.option("--customer", default=None, help="Customer (name or id); created if new.")
@click.option(
    "--models",
    "models",
    multiple=True,
    help="Allowed provider/model pattern (shell wildcards, e.g. 'openai/*'); repeatable.",
)
@click.option("--rpm", type=click.IntRange(min=1), default=None, help="Requests per minute.")
@click.option("--tpm", type=click.IntRange(min=1), default=None, help="Tokens per minute.")
@click.option("--expires", default=None, help="Expiry: YYYY-MM-DD (00:00 UTC) or ISO date-time.")
@click.option("--budget", default=None, help="The key's own hard limit in USD per --period.")
@click.option(
    "--period",
    default=None,
    help="Budget period: daily, weekly, monthly, yearly, Nh / Nd (rolling), or never.",
)
@click.option(
    "--soft",
    type=click.IntRange(min=1, max=100),
    default=None,
    help="Budget soft limit, % of --budget.",
)
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone of the budget.")
@click.option(
    "--allow-zero", is_flag=True, help="Accept --budget 0 (every priced request is refused)."
)
@format_option
@pass_context
def keys_create(
    ctx: CliContext,
    name: str,
    team: str | None,
    customer: str | None,
    models: tuple[str, ...],
    rpm: int | None,
    tpm: int | None,
    expires: str | None,
    budget: str | None,
    period: str | None,
    soft: int | None,
    timezone: str,
    allow_zero: bool,
    fmt: str,
) -> None:
    """Create a virtual key NAME and print its secret (shown only this once); with
    --budget and --period, the key gets its own budget in the same transaction."""
    now = datetime.now(UTC).replace(tzinfo=None)
    expires_at = parse_expiry(expires, now=now)
    for pattern in models:
        check_model_pattern(pattern, option="--models")
    if (budget is None) != (period is None):
        raise InvalidInput("--budget and --period go together (e.g. --budget 25 --period monthly)")
    if budget is None and (soft is not None or timezone != "UTC"):
        raise InvalidInput("--soft and --timezone describe a budget: add --budget and --period")
    limit_nano = (
        limit_from_option(budget, option="--budget", allow_zero=allow_zero)
        if budget is not None
        else None
    )
    if period is not None:  # refuse a bad budget before the key exists
        parse_period(period)
        parse_timezone(timezone)
    with ctx.engine().begin() as conn:
        created = create_key(
            conn,
            name=name,
            team=team,
            customer=customer,
            allowed_models=list(models),
            rpm_limit=rpm,
            tpm_limit=tpm,
            expires_at=expires_at,
        )
        if limit_nano is not None and period is not None:
            set_budget(
                conn,
                owner_type="key",
                owner_id=created.info.id,
                limit_nano=limit_nano,
                period=period,
                timezone=timezone,
                soft_pct=soft,
                now=now,
            )
    info = created.info
    if fmt == "json":
        click.echo(json.dumps({"id": info.id, "name": info.name, "key": created.secret}))
    elif fmt == "csv":
        click.echo("id,name,key")
        click.echo(f"{info.id},{info.name},{created.secret}")
    else:
        click.echo(f"created virtual key {info.name!r} (id {info.id})")
        click.echo(created.secret)
        click.echo("store it now: the secret is not shown again", err=True)


@keys.command(name="list")
@format_option
@pass_context
def keys_list(ctx: CliContext, fmt: str) -> None:
    """List virtual keys (never their secrets)."""
    with ctx.engine().connect() as conn:
        rows = [k.as_dict() for k in list_keys(conn)]
    emit(rows, fmt, columns=LIST_COLUMNS)


@keys.command(name="show")
@click.argument("key")
@format_option
@pass_context
def keys_show(ctx: CliContext, key: str, fmt: str) -> None:
    """Show one key (KEY is a name or an id)."""
    with ctx.engine().connect() as conn:
        row = find_key(conn, key).as_dict()
    if fmt == "table":
        width = max(len(c) for c in LIST_COLUMNS)
        for column in LIST_COLUMNS:
            value = row[column]
            shown = ",".join(value) if isinstance(value, list) else ("" if value is None else value)
            click.echo(f"{column.ljust(width)}  {shown}")
        return
    emit([row], fmt, columns=LIST_COLUMNS)


def _set_enabled(ctx: CliContext, key: str, enabled: bool) -> None:
    with ctx.engine().begin() as conn:
        info = set_key_enabled(conn, key, enabled=enabled)
    click.echo(f"virtual key {info.name!r} (id {info.id}) is {info.status}")


@keys.command(name="disable")
@click.argument("key")
@pass_context
def keys_disable(ctx: CliContext, key: str) -> None:
    """Disable a key: its requests get 403 within a second, on every server."""
    _set_enabled(ctx, key, False)


@keys.command(name="enable")
@click.argument("key")
@pass_context
def keys_enable(ctx: CliContext, key: str) -> None:
    """Re-enable a disabled key."""
    _set_enabled(ctx, key, True)
