"""``metering admin tokens``: the admin API's tokens (create, list, revoke)."""

from __future__ import annotations

import json

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.operations.tokens import create_token_op, revoke_token_op, token_rows
from metering.storage.admin_tokens import SCOPES
from metering.storage.audit import CLI_ACTOR

TOKEN_COLUMNS = ("id", "name", "prefix", "scopes", "status", "created_at", "revoked_at")


@click.group(name="admin")
def admin() -> None:
    """The admin HTTP API (/admin/v1/): its tokens (sk-adm-…); off until one exists."""


@admin.group(name="tokens")
def tokens() -> None:
    """Admin API tokens: the secret is shown once, only its hash is stored."""


@tokens.command(name="create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    help="A scope the token grants (repeatable) [default: every scope].",
)
@format_option
@pass_context
def tokens_create(ctx: CliContext, name: str, scopes: tuple[str, ...], fmt: str) -> None:
    """Create an admin token NAME and print its secret (shown only this once)."""
    with ctx.engine().begin() as conn:
        created = create_token_op(conn, name=name, scopes=scopes, actor=CLI_ACTOR)
    info = created.info
    if fmt == "json":
        click.echo(json.dumps({"id": info.id, "name": info.name, "token": created.secret}))
    elif fmt == "csv":
        click.echo("id,name,token")
        click.echo(f"{info.id},{info.name},{created.secret}")
    else:
        click.echo(f"created admin token {info.name!r} (id {info.id}): {', '.join(info.scopes)}")
        click.echo(created.secret)
        click.echo("store it now: the secret is not shown again", err=True)


@tokens.command(name="list")
@format_option
@pass_context
def tokens_list(ctx: CliContext, fmt: str) -> None:
    """List admin tokens (never their secrets)."""
    with ctx.engine().connect() as conn:
        rows = token_rows(conn)
    emit(rows, fmt, columns=TOKEN_COLUMNS)


@tokens.command(name="revoke")
@click.argument("token")
@pass_context
def tokens_revoke(ctx: CliContext, token: str) -> None:
    """Revoke a token (TOKEN: name or id): refused (401) at once, kept in the list."""
    with ctx.engine().begin() as conn:
        info = revoke_token_op(conn, token, actor=CLI_ACTOR)
    click.echo(f"admin token {info.name!r} (id {info.id}) is revoked")
