"""``metering prices``: import sheets, list and show versions, quote a request (the rules:
``operations.prices``)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.cli.params import DAY
from metering.errors import InvalidInput
from metering.operations.prices import (
    PriceDropsRefused,
    import_prices_op,
    price_rows,
    price_versions,
    quote_op,
    remove_prices_op,
)
from metering.storage.audit import CLI_ACTOR


@click.group(name="prices")
def prices() -> None:
    """Price sheets: import, list, show, quote."""


@prices.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--effective-from",
    type=DAY,
    help="Date a LiteLLM JSON import takes effect (default: today, UTC). "
    "TOML sheets carry their own.",
)
@click.option("--replace", is_flag=True, help="Overwrite stored versions of the same date.")
@click.option(
    "--allow-drop",
    is_flag=True,
    help="Import versions that lack rates, tiers or token limits of the version before them.",
)
@format_option
@pass_context
def prices_import(
    ctx: CliContext,
    file: Path,
    effective_from: date | None,
    replace: bool,
    allow_drop: bool,
    fmt: str,
) -> None:
    """Import a TOML price sheet or LiteLLM's model_prices_and_context_window.json."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{file} is not UTF-8 text") from None
    try:
        with ctx.engine().begin() as conn:
            outcome = import_prices_op(
                conn,
                text=text,
                filename=file.name,
                effective_from=effective_from,
                replace=replace,
                allow_drop=allow_drop,
                actor=CLI_ACTOR,
            )
    except PriceDropsRefused as exc:
        for note in exc.notes:
            click.echo(note, err=True)
        raise
    for note in outcome.notes:
        click.echo(note, err=True)
    emit(outcome.rows, fmt, columns=["outcome", "count"])


@prices.command(name="list")
@click.option("--provider", help="Only this provider.")
@click.option("--at", "at", type=DAY, help="Prices in force on.")
@format_option
@pass_context
def prices_list(ctx: CliContext, provider: str | None, at: date | None, fmt: str) -> None:
    """The price in force (today, or --at DATE) of every model; rates per 1M tokens."""
    with ctx.engine().connect() as conn:
        rows = price_rows(conn, provider=provider, at=at)
    emit(rows, fmt)


@prices.command(name="show")
@click.argument("model")
@format_option
@pass_context
def prices_show(ctx: CliContext, model: str, fmt: str) -> None:
    """Every price version of provider/model, oldest first (replaced ones too)."""
    with ctx.engine().connect() as conn:
        rows = price_versions(conn, model)
    emit(rows, fmt)


@prices.command(name="remove")
@click.argument("model")
@click.option(
    "--effective-from",
    type=DAY,
    help="Only the version of this date (default: every version of the model).",
)
@pass_context
def prices_remove(ctx: CliContext, model: str, effective_from: date | None) -> None:
    """Remove a mistaken price version of provider/model that no record is priced with
    (one that is in use is superseded by a later version instead)."""
    with ctx.engine().begin() as conn:
        removed = remove_prices_op(conn, model, effective_from=effective_from, actor=CLI_ACTOR)
    for v in removed:
        click.echo(f"removed the price version of {v.key} effective {v.effective_from}")


@prices.command(name="quote")
@click.argument("model")
@click.option("--prompt-tokens", type=int, default=0, help="Prompt tokens, cached ones included.")
@click.option("--completion-tokens", type=int, default=0, help="Completion tokens incl. reasoning.")
@click.option("--cached-read-tokens", type=int, default=0)
@click.option(
    "--cached-write-tokens", type=int, default=0, help="Cache writes, 1-hour ones included."
)
@click.option(
    "--cached-write-1h-tokens", type=int, default=0, help="The 1-hour part of the cache writes."
)
@click.option("--reasoning-tokens", type=int, default=0)
@click.option("--citation-tokens", type=int, default=0)
@click.option("--search-queries", type=int, default=0)
@click.option("--at", "at", type=DAY, help="Price date.")
@format_option
@pass_context
def prices_quote(
    ctx: CliContext,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cached_read_tokens: int,
    cached_write_tokens: int,
    cached_write_1h_tokens: int,
    reasoning_tokens: int,
    citation_tokens: int,
    search_queries: int,
    at: date | None,
    fmt: str,
) -> None:
    """What a request of these token counts costs, component by component."""
    tokens = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cached_read_tokens": cached_read_tokens,
        "cached_write_tokens": cached_write_tokens,
        "cached_write_1h_tokens": cached_write_1h_tokens,
        "reasoning_tokens": reasoning_tokens,
        "citation_tokens": citation_tokens,
        "search_queries": search_queries,
    }
    with ctx.engine().connect() as conn:
        quote = quote_op(conn, model, tokens, at=at)
    version, rows = quote.version, quote.rows
    if fmt == "table":
        click.echo(
            f"{version.key}  price version effective {version.effective_from} ({version.source})"
        )
        emit(rows[:-1], fmt, footer=rows[-1])
    else:
        emit(rows, fmt)
