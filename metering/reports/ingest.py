"""``metering ingest``: backfill usage records from saved responses (JSON Lines).

Each line: ``{"key": name-or-id, "timestamp": ISO-8601, "response": {...seed shape...},
"request_id"?: str, "model"?: "provider/model" as requested}``. A line without
``request_id`` gets one derived from its content (key, timestamp, model, response), so
ingesting the same file twice adds nothing. A bad line is reported with its number and
skipped; the others are written in batches through ``write_records`` (exactly once, the
rollup kept in step). A timestamp without a zone is UTC.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from metering.core.billing import BillingPolicy
from metering.core.pricing import PriceBook
from metering.core.records import record_values
from metering.core.responses import bill_response, read_response, split_model
from metering.errors import InvalidInput, MeteringError
from metering.storage.budgets import rebuild_budget_counters
from metering.storage.keys import KeyInfo, find_key
from metering.storage.prices import load_price_book
from metering.storage.records import write_records

BATCH_ROWS = 2_000
MAX_REPORTED_BAD = 1_000  # bad lines kept with their reason; all are counted
MAX_REQUEST_ID = 64


@dataclass
class IngestResult:
    ingested: int = 0
    duplicate: int = 0
    bad: int = 0
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    budget_changes: list[str] = field(default_factory=list)

    def add_bad(self, lineno: int, reason: str) -> None:
        self.bad += 1
        if len(self.bad_lines) < MAX_REPORTED_BAD:
            self.bad_lines.append((lineno, reason))


def parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidInput("timestamp must be an ISO-8601 string, e.g. 2026-11-03T12:00:00Z")
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"timestamp {value!r} is not ISO-8601") from None
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at


def requested_model(line: Mapping[str, Any], response: Mapping[str, Any]) -> str:
    """The ``provider/model`` asked for: the line's ``model``, else read off the response."""
    given = line.get("model")
    if given is not None:
        if not isinstance(given, str):
            raise InvalidInput("model must be a string written provider/model")
        split_model(given)
        return given
    extra = response.get("extra_fields")
    extra = extra if isinstance(extra, Mapping) else {}
    provider = extra.get("provider")
    model = extra.get("model_requested") or response.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInput('no model: give "model": "provider/model" on the line')
    if isinstance(provider, str) and provider and not model.startswith(f"{provider}/"):
        model = f"{provider}/{model}"
    split_model(model)
    return model


def derived_request_id(key_id: int, at: datetime, model: str, response: Any) -> str:
    canonical = json.dumps(
        [key_id, at.isoformat(), model, response], sort_keys=True, separators=(",", ":")
    )
    return "ingest-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:40]


@dataclass
class _Context:
    conn: Connection
    book: PriceBook
    policy: BillingPolicy
    keys: dict[str, KeyInfo] = field(default_factory=dict)

    def key(self, ref: Any) -> KeyInfo:
        if isinstance(ref, bool) or not isinstance(ref, str | int):
            raise InvalidInput("key must be a virtual key name or id")
        text = str(ref)
        if text not in self.keys:
            self.keys[text] = find_key(self.conn, text)
        return self.keys[text]


def _parse_line(text: str) -> Any:
    try:
        return orjson.loads(text)  # several times faster than json
    except orjson.JSONDecodeError:
        # json also reads NaN and integers beyond 64 bits, and its message names the column
        return json.loads(text)


def build_record(ctx: _Context, text: str) -> dict[str, Any]:
    """One JSON line → the values of a usage record (raises MeteringError when unusable)."""
    try:
        line = _parse_line(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(line, dict):
        raise InvalidInput("a line must be a JSON object with key, timestamp and response")
    missing = [f for f in ("key", "timestamp", "response") if f not in line]
    if missing:
        raise InvalidInput(f"missing {', '.join(missing)}")
    response = line["response"]
    if not isinstance(response, dict):
        raise InvalidInput("response must be a JSON object (a completions response)")
    key = ctx.key(line["key"])
    at = parse_timestamp(line["timestamp"])
    model = requested_model(line, response)
    request_id = line.get("request_id")
    if request_id is None:
        request_id = derived_request_id(key.id, at, model, response)
    elif not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID:
        raise InvalidInput(f"request_id must be a string of 1 to {MAX_REQUEST_ID} characters")
    facts = read_response(response, model)
    bill = bill_response(facts, ctx.book, requested=model, on=at.date(), policy=ctx.policy)
    extra = response.get("extra_fields")
    extra = extra if isinstance(extra, Mapping) else {}
    latency = extra.get("latency")
    latency_ms = latency if isinstance(latency, int) and not isinstance(latency, bool) else None
    request_type = extra.get("request_type")
    if not isinstance(request_type, str) or not request_type:
        obj = response.get("object")
        is_chat = isinstance(obj, str) and obj.startswith("chat")
        request_type = "chat_completion" if is_chat else "text_completion"
    return record_values(
        request_id=request_id,
        started_at=at,
        ended_at=at + timedelta(milliseconds=latency_ms or 0),
        key_id=key.id,
        team_id=key.team_id,
        customer_id=key.customer_id,
        requested_model=model,
        request_type=request_type[:32],
        stream=False,
        status="success",
        http_status=200,
        latency_ms=latency_ms,
        facts=facts,
        bill=bill,
    )


def _write_batch(engine: Engine, batch: list[dict[str, Any]], result: IngestResult) -> None:
    with engine.begin() as conn:
        inserted = write_records(conn, batch)
    result.ingested += len(inserted)
    result.duplicate += len(batch) - len(inserted)


def _rebuild_budgets(engine: Engine, now: datetime) -> list[str]:
    # Backfilled records inside a budget's current period count towards it.
    with engine.begin() as conn:
        return rebuild_budget_counters(conn, now=now)


def ingest_lines(
    engine: Engine,
    lines: Iterable[bytes],
    *,
    now: datetime,
    policy: BillingPolicy = "reported",
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Ingest JSON lines (raw bytes, numbered from 1); memory bounded by one batch."""
    result = IngestResult()
    with engine.connect() as conn:
        ctx = _Context(conn=conn, book=load_price_book(conn), policy=policy)
        batch: list[dict[str, Any]] = []
        seen: set[str] = set()  # a request_id twice in one batch must not be added twice
        for lineno, raw in enumerate(lines, start=1):
            if progress is not None:
                progress(len(raw))
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                result.add_bad(lineno, "not UTF-8 text")
                continue
            if not text.strip():
                continue
            try:
                record = build_record(ctx, text)
            except (MeteringError, ValueError, TypeError) as exc:
                result.add_bad(lineno, str(exc) or type(exc).__name__)
                continue
            if record["request_id"] in seen:
                result.duplicate += 1
                continue
            seen.add(record["request_id"])
            batch.append(record)
            if len(batch) >= BATCH_ROWS:
                conn.rollback()  # end the read transaction before writing elsewhere
                _write_batch(engine, batch, result)
                batch, seen = [], set()
        conn.rollback()
    if batch:
        _write_batch(engine, batch, result)
    if result.ingested:
        result.budget_changes = _rebuild_budgets(engine, now)
    return result
