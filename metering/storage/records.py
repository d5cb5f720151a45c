"""Writing usage records exactly once, and keeping the daily rollup in step.

``write_records`` inserts a batch in the caller's transaction. A record whose
``request_id`` is already stored is skipped (a retried write cannot double
count), and only the records actually inserted are added to the rollup, so
rollup = sum(records) holds whatever is replayed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Date, DateTime

from metering.storage.models import COST_COLUMNS, TOKEN_COLUMNS, UsageRecord
from metering.storage.raw_sql import is_postgres, render, rows_of, run, sqlite_value

ROLLUP_SUMS = (*TOKEN_COLUMNS, *COST_COLUMNS)
ROLLUP_KEY = ("day", "key_id", "team_id", "customer_id", "provider", "model")
ERROR_STATUSES_OK = frozenset({"success"})


# SQL text on the DBAPI cursor (``storage.raw_sql``): SQLAlchemy Core's per-execute
# work cost more CPU than the statements (≈ 80 µs against ≈ 11 µs each).
_RECORD_COLUMNS = tuple(c for c in UsageRecord.__table__.columns if c.name != "id")
_RECORD_DEFAULTS = tuple(
    c.default.arg if c.default is not None and c.default.is_scalar else None
    for c in _RECORD_COLUMNS
)
# Per line, ingest's one writing process spends more on preparing the values than on
# the insert: a row's values come by one ``itemgetter`` (the defaults merged in only
# for a record that lacks a column), and only the date columns are adapted for SQLite.
_RECORD_DEFAULTS_BY_NAME = {
    c.name: d for c, d in zip(_RECORD_COLUMNS, _RECORD_DEFAULTS, strict=True)
}
_record_row = itemgetter(*(c.name for c in _RECORD_COLUMNS))
_DATE_POSITIONS = tuple(
    i for i, c in enumerate(_RECORD_COLUMNS) if isinstance(c.type, DateTime | Date)
)
_rollup_sums = itemgetter(*ROLLUP_SUMS)
_INSERT_RECORDS = (
    "INSERT INTO usage_records ({columns}) VALUES {rows} "
    "ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
)
_ROLLUP_COLUMNS = (*ROLLUP_KEY, "requests", "errors", *ROLLUP_SUMS)
_UPSERT_ROLLUP = (
    "INSERT INTO daily_rollups ({columns}) VALUES ({values}) "
    "ON CONFLICT ({key}) DO UPDATE SET {sums}"
)
RECORDS_PER_STATEMENT = 200  # × 45 columns: under SQLite's 32,766 parameters


@functools.cache
def _insert_records_sql(postgres: bool, count: int) -> str:
    columns = ", ".join(c.name for c in _RECORD_COLUMNS)
    rows = rows_of(len(_RECORD_COLUMNS), count)
    return render(postgres, _INSERT_RECORDS, columns=columns, rows=rows)


@functools.cache
def _upsert_rollup_sql(postgres: bool) -> str:
    sums = ", ".join(f"{c} = daily_rollups.{c} + excluded.{c}" for c in _ROLLUP_COLUMNS[6:])
    return render(
        postgres,
        _UPSERT_ROLLUP,
        columns=", ".join(_ROLLUP_COLUMNS),
        values=len(_ROLLUP_COLUMNS),
        key=", ".join(ROLLUP_KEY),
        sums=sums,
    )


def write_records(conn: Connection, records: Sequence[Mapping[str, Any]]) -> list[str]:
    """Insert records (dicts of UsageRecord columns); returns the request_ids inserted."""
    if not records:
        return []
    inserted: set[str] = set()
    postgres = is_postgres(conn)
    for first in range(0, len(records), RECORDS_PER_STATEMENT):
        chunk = records[first : first + RECORDS_PER_STATEMENT]
        params: list[Any] = []
        for r in chunk:
            try:
                row = _record_row(r)
            except KeyError:
                row = _record_row({**_RECORD_DEFAULTS_BY_NAME, **r})
            if postgres:
                params += row
                continue
            values = list(row)
            for i in _DATE_POSITIONS:
                values[i] = sqlite_value(values[i])
            params += values
        sql = _insert_records_sql(postgres, len(chunk))
        found = run(conn, sql, params, adapted=True)
        inserted.update(row[0] for row in found)
    add_to_rollup(conn, (r for r in records if r["request_id"] in inserted))
    return [r["request_id"] for r in records if r["request_id"] in inserted]


def rollup_key(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        record["started_at"].date(),
        record["key_id"],
        record.get("team_id") or 0,
        record.get("customer_id") or 0,
        record["provider"],
        record["model"],
    )


def add_to_rollup(conn: Connection, records: Iterable[Mapping[str, Any]], *, sign: int = 1) -> None:
    """Add (sign=1) or subtract (sign=-1) records' sums into their daily rollup rows."""
    # Per group: its records' summed values, gathered as rows and summed column by
    # column at the end (``None``/missing counts 0, as in a record's own columns).
    groups: dict[tuple[Any, ...], tuple[list[tuple[Any, ...]], list[int]]] = {}
    for r in records:
        rows, errors = groups.setdefault(rollup_key(r), ([], [0]))
        try:
            rows.append(_rollup_sums(r))
        except KeyError:
            rows.append(tuple(r.get(c) for c in ROLLUP_SUMS))
        if r.get("status") not in ERROR_STATUSES_OK:
            errors[0] += 1
    if not groups:
        return
    sql = _upsert_rollup_sql(is_postgres(conn))
    # One statement per group keeps a fixed (sorted) lock order across writers.
    for key, (rows, errors) in sorted(groups.items()):
        sums = [sign * sum(map(int, filter(None, column))) for column in zip(*rows, strict=True)]
        run(conn, sql, [*key, sign * len(rows), sign * errors[0], *sums])
