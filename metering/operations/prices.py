"""Price operations: import a sheet (TOML or LiteLLM JSON), list the prices in force,
show a model's versions, quote a request, remove a mistaken version."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection

from metering.core.components import COMPONENT_TABLE, COMPONENTS, UNIT_PRICES, component_units
from metering.core.money import format_usd
from metering.core.pricing import PriceVersion, price_usage
from metering.core.responses import split_model
from metering.core.sheets import parse_litellm_json, parse_toml_sheet, version_to_dict
from metering.core.usage import normalize_usage
from metering.errors import Conflict, InvalidInput, NotFound
from metering.storage.audit import record_change
from metering.storage.prices import load_price_book, load_versions, remove_versions, save_versions

# Each component's own rate (its audio/image rates are shown by `prices show`).
RATE_COLUMNS = tuple(c.terms[0].rate for c in COMPONENT_TABLE if not c.per_unit)
QUOTE_TOKENS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_read_tokens",
    "cached_write_tokens",
    "cached_write_1h_tokens",
    "reasoning_tokens",
    "citation_tokens",
    "search_queries",
)


def today() -> date:
    return datetime.now(UTC).date()


def version_row(v: PriceVersion) -> dict[str, Any]:
    data = version_to_dict(v)
    row: dict[str, Any] = {
        "provider": v.provider,
        "model": v.model,
        "effective_from": data["effective_from"],
    }
    for name in (*RATE_COLUMNS, *UNIT_PRICES):
        row[name] = data["rates"].get(name)
    row["tiers"] = "; ".join(
        f">{t['above_prompt_tokens']}: "
        + ", ".join(f"{k}={val}" for k, val in t.items() if k != "above_prompt_tokens")
        for t in data["tiers"]
    )
    row["max_output_tokens"] = v.max_output_tokens
    row["source"] = v.source
    return row


class PriceDropsRefused(Conflict):
    """New versions would drop fields of the ones before them; ``drops`` names each."""

    def __init__(self, drops: list[str], notes: list[str]) -> None:
        super().__init__(
            f"{len(drops)} new price version(s) drop fields of the version before them "
            "(listed above), which would then be priced by a fallback rate or 0; nothing was "
            "imported. Add the fields to the sheet, or --allow-drop to import it as it is."
        )
        self.drops = drops
        self.notes = notes  # what the import printed up to here: skipped entries, drops


@dataclass
class ImportOutcome:
    rows: list[dict[str, Any]]  # outcome → count, as `prices import` prints them
    notes: list[str] = field(default_factory=list)  # skipped entries and dropped fields


def import_prices_op(
    conn: Connection,
    *,
    text: str,
    filename: str,
    effective_from: date | None = None,
    replace: bool = False,
    allow_drop: bool = False,
    actor: str,
) -> ImportOutcome:
    """Import a sheet's text: ``.json`` names LiteLLM's file (effective ``effective_from``,
    default today), anything else a TOML sheet. All or nothing."""
    skipped: dict[str, int] = {}
    notes: list[str] = []
    if filename.lower().endswith(".json"):
        when = effective_from or today()
        report = parse_litellm_json(text, effective_from=when, source=f"litellm:{filename}")
        versions, skipped = report.versions, dict(report.skipped)
        notes += [f"skipped {json.dumps(name)}: {why}" for name, why in report.skipped_entries]
    else:
        versions = parse_toml_sheet(text, source=f"sheet:{filename}")
    result = save_versions(conn, versions, replace=replace)
    if result.conflicts:
        first = result.conflicts[0]
        raise Conflict(
            f"{len(result.conflicts)} price version(s) differ from the stored ones of the "
            f"same date (first: {first.key} effective {first.effective_from}); nothing was "
            "imported. A price change is a new version: use a later --effective-from "
            "(or a new sheet), or --replace to correct the stored one."
        )
    drops = [
        f"{d.version.key} effective {d.version.effective_from} drops {', '.join(d.fields)} "
        f"(set by the version effective {d.previous.effective_from})"
        for d in result.drops
    ]
    if drops and not allow_drop:
        raise PriceDropsRefused(drops, notes + drops)
    rows: list[dict[str, Any]] = [
        {"outcome": "imported", "count": len(result.added)},
        {"outcome": "unchanged", "count": len(result.unchanged)},
        {"outcome": "replaced", "count": len(result.replaced)},
        {"outcome": "skipped", "count": sum(skipped.values())},
    ]
    rows += [{"outcome": f"skipped: {reason}", "count": n} for reason, n in sorted(skipped.items())]
    changed = [*result.added, *result.replaced]
    if changed:
        record_change(
            conn, actor=actor, action="prices.import", target=f"prices:{filename}",
            before=None,
            after={"versions": [f"{v.key}@{v.effective_from}" for v in changed],
                   "replaced": len(result.replaced)},
        )  # fmt: skip
    return ImportOutcome(rows=rows, notes=notes + drops)


def price_rows(conn: Connection, *, provider: str | None, at: date | None) -> list[dict[str, Any]]:
    """The price in force on ``at`` (default today) of every model."""
    on = at or today()
    book = load_price_book(conn)
    rows = []
    for key in book.models():
        p, m = split_model(key)
        if provider is not None and p != provider:
            continue
        version = book.lookup(p, m, on)
        if version is not None:
            rows.append(version_row(version))
    return rows


def price_versions(conn: Connection, model: str) -> list[dict[str, Any]]:
    """Every price version of provider/model, oldest first: the live ones and those a
    ``--replace`` superseded (whose rates their records were billed with), with ``id``
    and ``status`` (``live`` | ``replaced``)."""
    provider, name = split_model(model)
    live = load_versions(conn, provider=provider, model=name)
    old = load_versions(conn, provider=provider, model=name, which="replaced")
    if not live and not old:
        raise NotFound(f"no price for {model}; `metering prices list` shows the priced models")
    shown = sorted(
        [(v, "live") for v in live] + [(v, "replaced") for v in old],
        key=lambda pair: (pair[0].effective_from, pair[0].id or 0),
    )
    return [version_row(v) | {"id": v.id, "status": status} for v, status in shown]


@dataclass(frozen=True, slots=True)
class Quote:
    version: PriceVersion
    rows: list[dict[str, Any]]  # one per component, then the total


def quote_op(
    conn: Connection, model: str, tokens: dict[str, int], *, at: date | None = None
) -> Quote:
    """What a request of these token counts (``QUOTE_TOKENS``, 0 when absent) costs."""
    unknown = sorted(set(tokens) - set(QUOTE_TOKENS))
    if unknown:
        raise InvalidInput(f"unknown token count {unknown[0]!r} (known: {', '.join(QUOTE_TOKENS)})")
    t = {name: tokens.get(name, 0) for name in QUOTE_TOKENS}
    provider, name = split_model(model)
    usage = normalize_usage(
        {
            "prompt_tokens": t["prompt_tokens"],
            "completion_tokens": t["completion_tokens"],
            "prompt_tokens_details": {
                "cached_read_tokens": t["cached_read_tokens"],
                "cached_write_tokens": t["cached_write_tokens"],
                "cached_write_1h_tokens": t["cached_write_1h_tokens"],
            },
            "completion_tokens_details": {
                "reasoning_tokens": t["reasoning_tokens"],
                "citation_tokens": t["citation_tokens"],
                "num_search_queries": t["search_queries"],
            },
        }
    )
    if usage.totals_adjusted:
        raise InvalidInput(
            "--cached-read-tokens + --cached-write-tokens must not exceed --prompt-tokens, "
            "--cached-write-1h-tokens must not exceed --cached-write-tokens, and "
            "--reasoning-tokens must not exceed --completion-tokens (totals include them)"
        )
    on = at or today()
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
    rows.append({"component": "total", "units": "", "cost_usd": format_usd(sum(cost.values()))})
    return Quote(version=version, rows=rows)


def remove_prices_op(
    conn: Connection, model: str, *, effective_from: date | None, actor: str
) -> list[PriceVersion]:
    provider, name = split_model(model)
    removed = remove_versions(conn, provider=provider, model=name, effective_from=effective_from)
    if removed:
        record_change(
            conn, actor=actor, action="prices.remove", target=f"price:{model}",
            before={"versions": [version_row(v) for v in removed]}, after=None,
        )  # fmt: skip
    return removed
