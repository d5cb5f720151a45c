"""The monthly cost CSV (``metering export``): a summary per key × provider × model, or
one row per request, streamed to disk in bounded memory.

Team and customer are the ones recorded with the requests (as they were at request
time), so a key that moved team mid-month has one summary row per team. Amounts are
decimal USD strings; the file's total equals ``metering spend`` for the month to the
nano-dollar because both sum the same integer columns.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, func, select

from metering.core.money import format_usd
from metering.reports.common import (
    NO_FILTER,
    AttributionFilter,
    DayWindow,
    Names,
    load_names,
    parse_month,
)
from metering.reports.files import atomic_file, check_out_path, neutralise
from metering.reports.request_csv import copy_postgres, write_sqlite
from metering.storage.models import (
    COST_COLUMNS,
    TOKEN_COLUMNS,
    DailyEndUserRollup,
    DailyRollup,
    DailyTagRollup,
    RecordTag,
    UsageRecord,
)

Detail = Literal["summary", "requests"]
CHUNK_ROWS = 5_000  # rows fetched per round trip; memory stays bounded by this

SUMMARY_COLUMNS = (
    "month",
    "key",
    "team",
    "customer",
    "provider",
    "model",
    "requests",
    "errors",
    *TOKEN_COLUMNS,
    *COST_COLUMNS,
    "currency",
)
REQUEST_INFO = (
    "request_id",
    "started_at",
    "ended_at",
    "key",
    "team",
    "customer",
    "provider",
    "model",
    "requested_model",
    "request_type",
    "stream",
    "status",
    "http_status",
    "latency_ms",
    "cache_hit_type",
    "cost_source",
    "price_version_id",
    "billing_month",  # the calendar month (UTC) of started_at: the month it is billed in
    "end_user",  # the id the client sent (README, Attribution); scoped by customer/key
    "tags",  # sorted, comma-joined
)
REQUEST_COLUMNS = (
    *REQUEST_INFO,
    *TOKEN_COLUMNS,
    *COST_COLUMNS,
    "computed_cost",
    "reported_cost",
    "currency",
)
# Cells a user or a client chose: neutralised against formula injection (reports.files).
CHOSEN_TEXT = frozenset(
    ("key", "team", "customer", "provider", "model", "requested_model", "end_user", "tags")
)
CURRENCY = "USD"
MONEY_COLUMNS = frozenset((*COST_COLUMNS, "computed_cost", "reported_cost"))


def default_path(month: str, detail: Detail) -> Path:
    suffix = "-requests" if detail == "requests" else ""
    return Path("reports") / f"costs-{month}{suffix}.csv"


@dataclass
class ExportResult:
    path: Path
    rows: int = 0
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COST_COLUMNS, 0))


def count_rows(
    conn: Connection, month: str, detail: Detail, filters: AttributionFilter = NO_FILTER
) -> int:
    """How many rows the export will write (for a progress bar)."""
    window = parse_month(month)
    if detail == "requests":
        u = UsageRecord
        clauses = window.where_instant(u.started_at)
        if filters.end_user is not None:
            clauses.append(u.end_user == filters.end_user)
        if filters.tag is not None:
            clauses.append(
                u.id.in_(select(RecordTag.record_id).where(RecordTag.tag == filters.tag))
            )
        query = select(func.count()).where(*clauses)
    else:
        r = _summary_rollup(filters)
        grouped = (
            select(r.key_id)
            .where(*window.where_day(r.day), *_rollup_filters(r, filters))
            .group_by(*_summary_keys(r))
            .subquery()
        )
        query = select(func.count()).select_from(grouped)
    return int(conn.execute(query).scalar_one())


def _summary_rollup(filters: AttributionFilter) -> Any:
    """The rollup that answers: a record is in the tag rollup once per tag."""
    if filters.tag is not None:
        return DailyTagRollup
    return DailyEndUserRollup if filters.end_user is not None else DailyRollup


def _rollup_filters(r: Any, filters: AttributionFilter) -> list[Any]:
    clauses = []
    if filters.tag is not None:
        clauses.append(r.tag == filters.tag)
    if filters.end_user is not None:
        clauses.append(r.end_user == filters.end_user)
    return clauses


def _summary_keys(r: Any = DailyRollup) -> tuple[Any, ...]:
    return (r.key_id, r.team_id, r.customer_id, r.provider, r.model)


def summary_rows(
    conn: Connection, window: DayWindow, names: Names, filters: AttributionFilter = NO_FILTER
) -> Iterator[dict[str, Any]]:
    r = _summary_rollup(filters)
    sums = [
        func.sum(getattr(r, c)).label(c)
        for c in ("requests", "errors", *TOKEN_COLUMNS, *COST_COLUMNS)
    ]
    query = (
        select(*_summary_keys(r), *sums)
        .where(*window.where_day(r.day), *_rollup_filters(r, filters))
        .group_by(*_summary_keys(r))
        .order_by(*_summary_keys(r))
    )
    assert window.since is not None
    month = window.since.strftime("%Y-%m")
    for row in conn.execution_options(yield_per=CHUNK_ROWS).execute(query):
        m = row._mapping
        out: dict[str, Any] = {
            "month": month,
            "key": names.key(m["key_id"]),
            "team": names.team(m["team_id"]),
            "customer": names.customer(m["customer_id"]),
            "provider": m["provider"],
            "model": m["model"],
            "currency": CURRENCY,
        }
        # SUM(bigint) is numeric (Decimal) on PostgreSQL: exact, made int here.
        out.update({c: int(m[c]) for c in ("requests", "errors", *TOKEN_COLUMNS, *COST_COLUMNS)})
        yield out


def _timestamp(value: datetime) -> str:
    return value.isoformat(timespec="microseconds") + "Z"


def request_rows(conn: Connection, window: DayWindow, names: Names) -> Iterator[dict[str, Any]]:
    u = UsageRecord
    computed = ("key", "team", "customer", "billing_month", "currency")
    columns = [getattr(u, c) for c in REQUEST_COLUMNS if c not in computed]
    query = (
        select(u.key_id, u.team_id, u.customer_id, *columns)
        .where(*window.where_instant(u.started_at))
        .order_by(u.started_at, u.id)
    )
    for row in conn.execution_options(yield_per=CHUNK_ROWS).execute(query):
        out = dict(row._mapping)
        out["key"] = names.key(out.pop("key_id"))
        out["team"] = names.team(out.pop("team_id"))
        out["customer"] = names.customer(out.pop("customer_id"))
        out["started_at"] = _timestamp(out["started_at"])
        out["ended_at"] = _timestamp(out["ended_at"])
        out["billing_month"] = out["started_at"][:7]
        out["currency"] = CURRENCY
        yield out


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column in MONEY_COLUMNS:
        return format_usd(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if column in CHOSEN_TEXT:
        return neutralise(str(value)) or ""
    return str(value)


def write_export(
    conn: Connection,
    *,
    month: str,
    detail: Detail = "summary",
    out: Path | None = None,
    progress: Callable[[int], None] | None = None,
    create_folder: bool = True,
    filters: AttributionFilter = NO_FILTER,
) -> ExportResult:
    """Write the month's CSV to ``out`` (atomically: a temporary file renamed into place).
    ``create_folder=False`` (the CLI's ``--out``): a missing folder is an error."""
    window = parse_month(month)
    path = out if out is not None else default_path(month, detail)
    check_out_path(path, create=create_folder)
    columns = REQUEST_COLUMNS if detail == "requests" else SUMMARY_COLUMNS
    result = ExportResult(path=path)
    if detail == "requests":
        with atomic_file(path, binary=True) as raw:
            raw.write((",".join(columns) + "\n").encode("utf-8"))
            if conn.dialect.name == "postgresql":
                rows, totals = copy_postgres(conn, window, REQUEST_COLUMNS, raw, progress, filters)
            else:
                rows, totals = write_sqlite(
                    conn,
                    window,
                    REQUEST_COLUMNS,
                    raw,
                    progress,
                    scratch=Path(raw.name),
                    filters=filters,
                )
        result.rows, result.totals = rows, totals
    else:
        with atomic_file(path) as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(columns)
            rows_ = summary_rows(conn, window, load_names(conn), filters)
            _write_rows(writer, rows_, result, progress)
    return result


def _write_rows(
    writer: Any,
    rows: Iterator[dict[str, Any]],
    result: ExportResult,
    progress: Callable[[int], None] | None,
) -> None:
    """Rows rendered cell by cell in Python (the summary, a few thousand rows)."""
    pending = 0
    for row in rows:
        writer.writerow([_cell(c, row.get(c)) for c in SUMMARY_COLUMNS])
        _add_totals(result, row)
        pending += 1
        if progress is not None and pending == CHUNK_ROWS:
            progress(pending)
            pending = 0
    if progress is not None and pending:
        progress(pending)


def _add_totals(result: ExportResult, row: Mapping[str, Any]) -> None:
    result.rows += 1
    for c in COST_COLUMNS:
        result.totals[c] += int(row[c])
