"""``metering keys``: virtual keys (create, list, show, update, disable, enable; the rules:
``operations.keys``)."""

from __future__ import annotations

import json
from typing import Any

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.errors import InvalidInput
from metering.operations.keys import (
    KEY_STATUSES,
    KeyFilter,
    KeySpec,
    create_key_op,
    key_rows,
    set_key_enabled_op,
    update_key_op,
)
from metering.storage.audit import CLI_ACTOR
from metering.storage.keys import find_key

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
    "tags",
)


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
@click.option(
    "--tag",
    "tags",
    multiple=True,
    help="Default tag of the key's requests (feature=rag, or bare); repeatable.",
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
    tags: tuple[str, ...],
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
    spec = KeySpec(
        name=name,
        team=team,
        customer=customer,
        models=models,
        rpm=rpm,
        tpm=tpm,
        expires=expires,
        budget=budget,
        period=period,
        soft=soft,
        timezone=timezone,
        allow_zero=allow_zero,
        tags=tags,
    )
    with ctx.engine().begin() as conn:
        created = create_key_op(conn, spec, actor=CLI_ACTOR)
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
@click.option("--team", default=None, help="Only the keys of this team (name or id).")
@click.option("--customer", default=None, help="Only the keys of this customer (name or id).")
@click.option("--status", type=click.Choice(KEY_STATUSES), default=None, help="Only these.")
@format_option
@pass_context
def keys_list(
    ctx: CliContext, team: str | None, customer: str | None, status: str | None, fmt: str
) -> None:
    """List virtual keys (never their secrets)."""
    with ctx.engine().connect() as conn:
        rows, _ = key_rows(conn, KeyFilter(team=team, customer=customer, status=status))
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
        info = set_key_enabled_op(conn, key, enabled=enabled, actor=CLI_ACTOR)
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


NONE = "none"  # an option's value that clears the setting


@keys.command(name="update")
@click.argument("key")
@click.option(
    "--models",
    "models",
    multiple=True,
    help="New allowed provider/model patterns (repeatable); 'none': every model.",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    help="New default request tags, replacing the key's (repeatable); 'none': no tags.",
)
@click.option("--rpm", default=None, help="Requests per minute; 'none': no limit.")
@click.option("--tpm", default=None, help="Tokens per minute; 'none': no limit.")
@click.option("--expires", default=None, help="YYYY-MM-DD or ISO date-time; 'none': never.")
@click.option("--team", default=None, help="Team (name or id; created if new); 'none'.")
@click.option("--customer", default=None, help="Customer (name or id); 'none'.")
@format_option
@pass_context
def keys_update(
    ctx: CliContext,
    key: str,
    models: tuple[str, ...],
    tags: tuple[str, ...],
    rpm: str | None,
    tpm: str | None,
    expires: str | None,
    team: str | None,
    customer: str | None,
    fmt: str,
) -> None:
    """Change a key's models, tags, rate limits, expiry, team or customer (KEY: name or
    id); only the options given change. Prints the key as `keys show` does."""  # fmt: skip
    changes: dict[str, Any] = {}
    if models:
        changes["models"] = [] if models == (NONE,) else list(models)
    if tags:
        changes["tags"] = [] if tags == (NONE,) else list(tags)
    for name, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None:
            changes[name] = None if value == NONE else _whole(value, name)
    for name, value in (("expires", expires), ("team", team), ("customer", customer)):
        if value is not None:
            changes[name] = None if value == NONE else value
    with ctx.engine().begin() as conn:
        row = update_key_op(conn, key, changes, actor=CLI_ACTOR).as_dict()
    emit([row], fmt, columns=LIST_COLUMNS)


def _whole(value: str, name: str) -> int:
    if not value.strip().isdigit():
        raise InvalidInput(f"--{name} {value!r} is not a whole number (or 'none')")
    return int(value)
