"""``metering ingest``: backfill usage records from saved responses (JSON Lines).

Each line: ``{"key": name-or-id, "timestamp": ISO-8601, "response": {...seed shape...},
"request_id"?: str, "model"?: "provider/model" as requested}``. A line without
``request_id`` gets one derived from its content (``ingest_ids``), so ingesting the
same file twice adds nothing. A bad line is reported with its number and skipped; the
others are written in batches through ``storage.ledger.record`` (exactly once, the rollup kept in
step). A timestamp without a zone is UTC.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from multiprocessing.pool import AsyncResult, Pool
from typing import Any

import orjson
from sqlalchemy import Connection, Engine

from metering.core.billing import BillingPolicy, bill_request
from metering.core.pricing import PriceBook, PriceVersion
from metering.core.records import UsageRow, record_row
from metering.core.responses import ResponseFacts, check_model_name, find_price, read_response
from metering.core.storable import has_control, storable
from metering.errors import InvalidInput, MeteringError
from metering.reports.ingest_ids import derived_request_id
from metering.runtime import tune_gc
from metering.storage import ledger
from metering.storage.budgets import rebuild_budget_counters
from metering.storage.engine import is_sqlite
from metering.storage.keys import KeyInfo, find_key
from metering.storage.ledger import NO_SETTLEMENT
from metering.storage.prices import load_price_book

# Rows a write transaction: the request_id index takes the (random, hashed) ids all over
# its leaves, and each commit writes every leaf page it touched, so the cost of a row
# falls as the batch grows (1M rows, CPU of the writer a row: 42 µs in batches of 2,000,
# 30 µs in batches of 20,000). A batch holds SQLite's write lock for ≈ 0.5 s.
BATCH_ROWS = 20_000
WRITER_CACHE_KIB = 65_536  # SQLite page cache of the writing connection (default 2 MiB)
CHUNK_LINES = 1_000  # lines a worker parses and prices at a time
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


FUTURE_SLACK = timedelta(minutes=5)  # clocks disagree a little; a later time is a mistake


def parse_timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidInput("timestamp must be an ISO-8601 string, e.g. 2026-11-03T12:00:00Z")
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"timestamp {value!r} is not ISO-8601") from None
    if at.tzinfo is UTC:  # "Z": the usual case, no conversion
        at = at.replace(tzinfo=None)
    elif at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    if at > datetime.now(UTC).replace(tzinfo=None) + FUTURE_SLACK:
        raise InvalidInput(f"timestamp {value!r} is in the future (a saved response has happened)")
    return at


def requested_model(line: Mapping[str, Any], response: Mapping[str, Any]) -> str:
    """The ``provider/model`` asked for: the line's ``model``, else read off the response."""
    given = line.get("model")
    if given is not None:
        if not isinstance(given, str):
            raise InvalidInput("model must be a string written provider/model")
        check_model_name(given)
        return given
    extra = response.get("extra_fields")
    extra = extra if isinstance(extra, dict) else {}  # what JSON gives (a dict is cheaper)
    provider = extra.get("provider")
    model = extra.get("model_requested") or response.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidInput('no model: give "model": "provider/model" on the line')
    if isinstance(provider, str) and provider and not model.startswith(f"{provider}/"):
        model = f"{provider}/{model}"
    check_model_name(model)
    return model


Row = UsageRow  # a usage record (``record_row``)
_Chunk = tuple[list[Row], list[tuple[int, str]]]


@dataclass
class _Context:
    conn: Connection
    book: PriceBook
    policy: BillingPolicy
    keys: dict[str, KeyInfo] = field(default_factory=dict)
    prices: dict[tuple[str, str, str, date], PriceVersion | None] = field(default_factory=dict)

    def price(self, facts: ResponseFacts, requested: str, on: date) -> PriceVersion | None:
        at = (facts.provider, facts.model, requested, on)
        if at not in self.prices:
            self.prices[at] = find_price(
                self.book, provider=facts.provider, model=facts.model, requested=requested, on=on
            )
        return self.prices[at]

    def key(self, ref: Any) -> KeyInfo:
        if isinstance(ref, bool) or not isinstance(ref, str | int):
            raise InvalidInput("key must be a virtual key name or id")
        text = str(ref)
        if has_control(text):
            raise InvalidInput("key may not contain control characters (e.g. NUL)")
        if text not in self.keys:
            self.keys[text] = find_key(self.conn, text)
        return self.keys[text]


def _parse_line(text: str) -> tuple[Any, bool]:
    """The line's value, and whether orjson read it."""
    try:
        return orjson.loads(text), True  # several times faster than json
    except orjson.JSONDecodeError:
        # json also reads NaN and integers beyond 64 bits, and its message names the column
        return json.loads(text), False


def build_record(ctx: _Context, text: str) -> Row:
    """One JSON line → the row of a usage record (raises MeteringError when unusable)."""
    try:
        line, by_orjson = _parse_line(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(line, dict):
        raise InvalidInput("a line must be a JSON object with key, timestamp and response")
    if "key" not in line or "timestamp" not in line or "response" not in line:
        missing = [f for f in ("key", "timestamp", "response") if f not in line]
        raise InvalidInput(f"missing {', '.join(missing)}")
    response = line["response"]
    if not isinstance(response, dict):
        raise InvalidInput("response must be a JSON object (a completions response)")
    key = ctx.key(line["key"])
    at = parse_timestamp(line["timestamp"])
    model = requested_model(line, response)
    request_id = line.get("request_id")
    if request_id is None:
        request_id = derived_request_id(key.id, at, model, response, read_by_orjson=by_orjson)
    elif not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID:
        raise InvalidInput(f"request_id must be a string of 1 to {MAX_REQUEST_ID} characters")
    elif has_control(request_id):
        raise InvalidInput("request_id may not contain control characters (e.g. NUL)")
    facts = read_response(response, model)
    bill = bill_request(  # what bill_response does, with the price looked up once a day
        facts.usage,
        ctx.price(facts, model, at.date()),
        reported_total=facts.reported_cost,
        policy=ctx.policy,
        cache_hit_type=facts.cache_hit_type,
    )
    extra = response.get("extra_fields")
    extra = extra if isinstance(extra, dict) else {}
    latency = extra.get("latency")
    latency_ms = latency if isinstance(latency, int) and not isinstance(latency, bool) else None
    request_type = extra.get("request_type")
    if not isinstance(request_type, str) or not request_type:
        obj = response.get("object")
        is_chat = isinstance(obj, str) and obj.startswith("chat")
        request_type = "chat_completion" if is_chat else "text_completion"
    return record_row(
        request_id=request_id,
        started_at=at,
        ended_at=at + timedelta(milliseconds=latency_ms or 0),
        key_id=key.id,
        team_id=key.team_id,
        customer_id=key.customer_id,
        requested_model=model,
        request_type=storable(request_type, 32),
        stream=False,
        status="success",
        http_status=200,
        latency_ms=latency_ms,
        facts=facts,
        bill=bill,
    )


# SQLite settings of the writing connection, put back before it returns to the pool: a
# page cache that holds the pages a batch dirties (else they spill to the log mid-
# transaction), and statement journals in memory (each multi-row INSERT keeps one, and
# spilled it to a temporary file: ≈ 2 µs a row).
_WRITER_PRAGMAS = {"cache_size": -WRITER_CACHE_KIB, "temp_store": 2}  # 2 = MEMORY


@contextmanager
def _writer(engine: Engine) -> Iterator[Connection]:
    """The connection the batches are written on (``_WRITER_PRAGMAS`` on SQLite)."""
    with engine.connect() as conn:
        if not is_sqlite(engine):
            yield conn
            return
        before = {
            name: int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())
            for name in _WRITER_PRAGMAS
        }
        for name, value in _WRITER_PRAGMAS.items():
            conn.exec_driver_sql(f"PRAGMA {name} = {value}")
        conn.commit()
        try:
            yield conn
        finally:
            if not conn.invalidated:
                conn.rollback()
                for name, value in before.items():
                    conn.exec_driver_sql(f"PRAGMA {name} = {value}")
                conn.commit()


def _write_batch(writer: Connection, batch: list[Row], result: IngestResult) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    with writer.begin():
        inserted = sum(ledger.record(writer, [(row, NO_SETTLEMENT) for row in batch], now=now))
    result.ingested += inserted
    result.duplicate += len(batch) - inserted


def _rebuild_budgets(engine: Engine, now: datetime) -> list[str]:
    # Backfilled records inside a budget's current period count towards it.
    with engine.begin() as conn:
        return rebuild_budget_counters(conn, now=now)


def _build_chunk(ctx: _Context, first: int, raws: list[bytes]) -> _Chunk:
    """Lines ``first``… → their records (in order) and their bad lines with reasons."""
    records: list[Row] = []
    bad: list[tuple[int, str]] = []
    for lineno, raw in enumerate(raws, start=first):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append((lineno, "not UTF-8 text"))
            continue
        if not text.strip():
            continue
        try:
            records.append(build_record(ctx, text))
        except (MeteringError, ValueError, TypeError) as exc:
            bad.append((lineno, str(exc) or type(exc).__name__))
    ctx.conn.rollback()  # never hold a read transaction while the writer commits
    return records, bad


def _chunks(
    lines: Iterable[bytes], progress: Callable[[int], None] | None
) -> Iterator[tuple[int, list[bytes]]]:
    lineno = 1
    chunk: list[bytes] = []
    for raw in lines:
        if progress is not None:
            progress(len(raw))
        chunk.append(raw)
        if len(chunk) >= CHUNK_LINES:
            yield lineno, chunk
            lineno += len(chunk)
            chunk = []
    if chunk:
        yield lineno, chunk


def ingest_lines(
    engine: Engine,
    lines: Iterable[bytes],
    *,
    now: datetime,
    policy: BillingPolicy = "reported",
    progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Ingest JSON lines (raw bytes, numbered from 1); memory bounded by a few chunks.

    A long input is parsed and priced in worker processes (one per core) while this
    process writes their records in line order; a short one is done here.
    """
    result = IngestResult()
    chunks = _chunks(lines, progress)
    head = list(itertools.islice(chunks, 2))
    with engine.connect() as conn:
        book = load_price_book(conn)
        conn.rollback()
    with ExitStack() as stack:
        built: Iterable[_Chunk]
        if len(head) > 1 and _can_fork(engine):
            pool = stack.enter_context(
                multiprocessing.get_context("fork").Pool(
                    processes=os.cpu_count() or 1,
                    initializer=_start_worker,
                    initargs=(engine, book, policy),
                )
            )
            built = _in_order(pool, itertools.chain(head, chunks))
        else:
            conn = stack.enter_context(engine.connect())
            ctx = _Context(conn=conn, book=book, policy=policy)
            built = (
                _build_chunk(ctx, first, raws) for first, raws in itertools.chain(head, chunks)
            )
        writer = stack.enter_context(_writer(engine))
        batch: list[Row] = []
        seen: set[str] = set()  # a request_id twice in one batch must not be added twice
        for records, bad in built:
            for lineno, reason in bad:
                result.add_bad(lineno, reason)
            for record in records:
                request_id = record[0]
                if request_id in seen:
                    result.duplicate += 1
                    continue
                seen.add(request_id)
                batch.append(record)
            if len(batch) >= BATCH_ROWS:
                _write_batch(writer, batch, result)
                batch, seen = [], set()
        if batch:
            _write_batch(writer, batch, result)
    if result.ingested:
        result.budget_changes = _rebuild_budgets(engine, now)
    return result


def _in_order(pool: Pool, todo: Iterator[tuple[int, list[bytes]]]) -> Iterator[_Chunk]:
    """The workers' chunks in line order, a few at a time (memory stays bounded, unlike
    ``imap``, which reads the whole input ahead)."""
    pending: deque[AsyncResult[_Chunk]] = deque()
    ahead = 2 * (os.cpu_count() or 1)
    for chunk in todo:
        pending.append(pool.apply_async(_worker_build, (chunk,)))
        if len(pending) >= ahead:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def _can_fork(engine: Engine) -> bool:
    """Workers are forked: they inherit the engine and the price book (neither pickles),
    and they need a database they can open themselves (not an in-memory one)."""
    in_memory = engine.url.database in (None, "", ":memory:")
    return not in_memory and "fork" in multiprocessing.get_all_start_methods()


# One per worker process, set by its initializer (a pool's way of keeping state).
_worker: list[_Context] = []


def _start_worker(engine: Engine, book: PriceBook, policy: BillingPolicy) -> None:
    engine.dispose(close=False)  # the parent's pooled connections stay the parent's
    _worker.append(_Context(conn=engine.connect(), book=book, policy=policy))
    tune_gc(batch=True)  # a line makes a few hundred short-lived objects: fewer, cheaper GC passes


def _worker_build(chunk: tuple[int, list[bytes]]) -> _Chunk:
    return _build_chunk(_worker[0], *chunk)
