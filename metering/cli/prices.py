"""``metering prices``: import sheets, list and show versions, quote a request."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import emit, format_option
from metering.cli.params import DAY
from metering.core.components import COMPONENT_TABLE, COMPONENTS, UNIT_PRICES, component_units
from metering.core.money import format_usd
from metering.core.pricing import PriceVersion, price_usage
from metering.core.responses import split_model
from metering.core.sheets import parse_litellm_json, parse_toml_sheet, version_to_dict
from metering.core.usage import normalize_usage
from metering.errors import Conflict, InvalidInput, NotFound
from metering.storage.prices import (
    load_price_book,
    load_versions,
    remove_versions,
    save_versions,
)

# Each component's own rate (its audio/image rates are shown by `prices show`).
RATE_COLUMNS = tuple(c.terms[0].rate for c in COMPONENT_TABLE if not c.per_unit)
UNIT_COLUMNS = UNIT_PRICES


def _today() -> date:
    return datetime.now(UTC).date()


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
    skipped: dict[str, int] = {}
    if file.suffix.lower() == ".json":
        when = effective_from or _today()
        report = parse_litellm_json(text, effective_from=when, source=f"litellm:{file.name}")
        versions, skipped = report.versions, dict(report.skipped)
        for name, why in report.skipped_entries:
            click.echo(f"skipped {json.dumps(name)}: {why}", err=True)
    else:
        versions = parse_toml_sheet(text, source=f"sheet:{file.name}")
    with ctx.engine().begin() as conn:
        result = save_versions(conn, versions, replace=replace)
        if result.conflicts:
            first = result.conflicts[0]
            raise Conflict(
                f"{len(result.conflicts)} price version(s) differ from the stored ones of the "
                f"same date (first: {first.key} effective {first.effective_from}); nothing was "
                "imported. A price change is a new version: use a later --effective-from "
                "(or a new sheet), or --replace to correct the stored one."
            )
        for drop in result.drops:
            click.echo(
                f"{drop.version.key} effective {drop.version.effective_from} drops "
                f"{', '.join(drop.fields)} (set by the version effective "
                f"{drop.previous.effective_from})",
                err=True,
            )
        if result.drops and not allow_drop:
            raise Conflict(
                f"{len(result.drops)} new price version(s) drop fields of the version before "
                "them (listed above), which would then be priced by a fallback rate or 0; "
                "nothing was imported. Add the fields to the sheet, or --allow-drop to import "
                "it as it is."
            )
    rows: list[dict[str, Any]] = [
        {"outcome": "imported", "count": len(result.added)},
        {"outcome": "unchanged", "count": len(result.unchanged)},
        {"outcome": "replaced", "count": len(result.replaced)},
        {"outcome": "skipped", "count": sum(skipped.values())},
    ]
    rows += [{"outcome": f"skipped: {reason}", "count": n} for reason, n in sorted(skipped.items())]
    emit(rows, fmt, columns=["outcome", "count"])


def _version_row(v: PriceVersion) -> dict[str, Any]:
    data = version_to_dict(v)
    row: dict[str, Any] = {
        "provider": v.provider,
        "model": v.model,
        "effective_from": data["effective_from"],
    }
    for name in (*RATE_COLUMNS, *UNIT_COLUMNS):
        row[name] = data["rates"].get(name)
    row["tiers"] = "; ".join(
        f">{t['above_prompt_tokens']}: "
        + ", ".join(f"{k}={val}" for k, val in t.items() if k != "above_prompt_tokens")
        for t in data["tiers"]
    )
    row["max_output_tokens"] = v.max_output_tokens
    row["source"] = v.source
    return row


@prices.command(name="list")
@click.option("--provider", help="Only this provider.")
@click.option("--at", "at", type=DAY, help="Prices in force on.")
@format_option
@pass_context
def prices_list(ctx: CliContext, provider: str | None, at: date | None, fmt: str) -> None:
    """The price in force (today, or --at DATE) of every model; rates per 1M tokens."""
    on = at or _today()
    with ctx.engine().connect() as conn:
        book = load_price_book(conn)
    rows = []
    for key in book.models():
        p, m = split_model(key)
        if provider is not None and p != provider:
            continue
        version = book.lookup(p, m, on)
        if version is not None:
            rows.append(_version_row(version))
    emit(rows, fmt)


@prices.command(name="show")
@click.argument("model")
@format_option
@pass_context
def prices_show(ctx: CliContext, model: str, fmt: str) -> None:
    """Every price version of provider/model, oldest first (replaced ones too)."""
    provider, name = split_model(model)
    with ctx.engine().connect() as conn:
        live = load_versions(conn, provider=provider, model=name)
        old = load_versions(conn, provider=provider, model=name, which="replaced")
    if not live and not old:
        raise NotFound(f"no price for {model}; `metering prices list` shows the priced models")
    shown = sorted(
        [(v, "live") for v in live] + [(v, "replaced") for v in old],
        key=lambda pair: (pair[0].effective_from, pair[0].id or 0),
    )
    emit([_version_row(v) | {"id": v.id, "status": status} for v, status in shown], fmt)


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
    provider, name = split_model(model)
    with ctx.engine().begin() as conn:
        removed = remove_versions(
            conn,
            provider=provider,
            model=name,
            effective_from=effective_from,
        )
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
    provider, name = split_model(model)
    usage = normalize_usage(
        {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "prompt_tokens_details": {
                "cached_read_tokens": cached_read_tokens,
                "cached_write_tokens": cached_write_tokens,
                "cached_write_1h_tokens": cached_write_1h_tokens,
            },
            "completion_tokens_details": {
                "reasoning_tokens": reasoning_tokens,
                "citation_tokens": citation_tokens,
                "num_search_queries": search_queries,
            },
        }
    )
    if usage.totals_adjusted:
        raise InvalidInput(
            "--cached-read-tokens + --cached-write-tokens must not exceed --prompt-tokens, "
            "--cached-write-1h-tokens must not exceed --cached-write-tokens, and "
            "--reasoning-tokens must not exceed --completion-tokens (totals include them)"
        )
    on = at or _today()
    with ctx.engine().connect() as conn:
        version = load_price_book(conn).lookup(provider, name, on)
    if version is None:
        raise NotFound(
            f"no price for {model} on {on}; `metering prices list` shows the priced models, "
            "`metering prices import FILE` adds one"
        )
    cost = price_usage(usage, version).as_dict()
    units = component_units(usage)
    rows: list[dict[str, Any]] = [
        {"component": c, "units": units[c], "cost_usd": format_usd(cost[c])} for c in COMPONENTS
    ]
    total = {"component": "total", "units": "", "cost_usd": format_usd(sum(cost.values()))}
    if fmt == "table":
        click.echo(
            f"{version.key}  price version effective {version.effective_from} ({version.source})"
        )
        emit(rows, fmt, footer=total)
    else:
        emit([*rows, total], fmt)
