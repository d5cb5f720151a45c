"""``/admin/v1/prices``: the twins of ``metering prices list | show | quote | import``
(``operations.prices``)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import Field
from sqlalchemy import Connection

from metering.admin.endpoint import NSTR, STR, Endpoint, listing, obj
from metering.admin.http import AdminRequest, ApiError, Body, Param, Reply, checked_day
from metering.operations.prices import (
    QUOTE_TOKENS,
    PriceDropsRefused,
    import_prices_op,
    price_rows,
    price_versions,
    quote_op,
)

VERSION = obj(("provider", "model", "effective_from", "source"),
              provider=STR, model=STR, effective_from=STR, source=NSTR)  # fmt: skip
QUOTE = obj(
    ("model", "effective_from", "components"),
    model=STR, effective_from=STR,
    components={"type": "array", "items": obj(("component", "cost_usd"), component=STR,
                                              cost_usd=STR)},
)  # fmt: skip
IMPORTED = obj(("outcomes", "notes"), outcomes={"type": "array"}, notes={"type": "array"})
MAX_SHEET_CHARS = 30 * 1024 * 1024


class PriceImport(Body):
    """A sheet's text: ``filename`` ending ``.json`` is LiteLLM's table, else TOML."""

    free_text = frozenset(("content",))

    filename: Annotated[str, Field(min_length=1, max_length=200)]
    content: Annotated[str, Field(max_length=MAX_SHEET_CHARS)]
    effective_from: str | None = None
    replace: bool = False
    allow_drop: bool = False


def list_prices(conn: Connection, request: AdminRequest) -> Reply:
    q = request.query
    return Reply(200, {"data": price_rows(conn, provider=q.get("provider"), at=q.get("at"))})


def show_prices(conn: Connection, request: AdminRequest) -> Reply:
    return Reply(200, {"data": price_versions(conn, request.query["model"])})


def quote(conn: Connection, request: AdminRequest) -> Reply:
    q = request.query
    tokens = {name: q[name] for name in QUOTE_TOKENS if name in q}
    result = quote_op(conn, q["model"], tokens, at=q.get("at"))
    version = result.version
    return Reply(200, {"model": version.key, "effective_from": str(version.effective_from),
                       "source": version.source, "components": result.rows})  # fmt: skip


def import_prices(conn: Connection, request: AdminRequest) -> Reply:
    body = request.json_body(PriceImport)
    when: date | None = (
        checked_day(body.effective_from, "effective_from") if body.effective_from else None
    )
    try:
        outcome = import_prices_op(
            conn,
            text=body.content,
            filename=body.filename,
            effective_from=when,
            replace=body.replace,
            allow_drop=body.allow_drop,
            actor=request.token.name,
        )
    except PriceDropsRefused as exc:
        message = str(exc).replace("(listed above)", f"({'; '.join(exc.drops)})")
        raise ApiError(409, "conflict", message) from None
    return Reply(200, {"outcomes": outcome.rows, "notes": outcome.notes})


ENDPOINTS = [
    Endpoint("GET", "/prices", "prices:read", list_prices,
             "The price in force of every model (rates per 1M tokens)",
             query=(Param("provider"), Param("at", "date")), response=listing(VERSION)),
    Endpoint("GET", "/prices/versions", "prices:read", show_prices,
             "Every price version of provider/model, oldest first",
             query=(Param("model", required=True, description="provider/model"),),
             response=listing(VERSION)),
    Endpoint("GET", "/prices/quote", "prices:read", quote,
             "What a request of these token counts costs, per component",
             query=(Param("model", required=True, description="provider/model"),
                    Param("at", "date"),
                    *(Param(n, "integer", minimum=0, maximum=10**12) for n in QUOTE_TOKENS)),
             response=QUOTE),
    Endpoint("POST", "/prices/import", "prices:write", import_prices,
             "Import a TOML sheet or LiteLLM's JSON table (all or nothing)", body=PriceImport,
             response=IMPORTED, writes=True),
]  # fmt: skip
