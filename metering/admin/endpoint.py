"""One admin route as data: method, path (under ``/admin/v1``), the scope it needs, its
handler, and what the OpenAPI document says of it (body model, query parameters,
response schema)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from metering.admin.http import AdminRequest, Body, Param, Reply, Streamed

Handler = Callable[[Connection, AdminRequest], Reply | Streamed]


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    scope: str
    handler: Handler
    summary: str
    body: type[Body] | None = None
    query: tuple[Param, ...] = ()
    response: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    status: int = 200
    writes: bool = False  # runs in a transaction (and takes an Idempotency-Key if POST)
    redact: tuple[str, ...] = ()  # body fields never stored for an idempotent replay
    csv: bool = False  # streams text/csv


def obj(required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    """A JSON schema object with these properties (more may come: forward compatible)."""
    return {"type": "object", "required": list(required), "properties": properties}


def listing(item: dict[str, Any], *, paged: bool = False) -> dict[str, Any]:
    schema = obj(("data",), data={"type": "array", "items": item})
    if paged:
        schema["required"] += ["total", "limit", "offset"]
        schema["properties"].update(
            total={"type": "integer"},
            limit={"type": ["integer", "null"]},
            offset={"type": "integer"},
        )
    return schema


STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
INT = {"type": "integer"}
NINT = {"type": ["integer", "null"]}
BOOL = {"type": "boolean"}
USD = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"}
NUSD = {"type": ["string", "null"], "pattern": r"^-?\d+(\.\d+)?$"}  # an amount, or null
