"""Writing usage records exactly once, and keeping the daily rollup in step (a part of
``storage.ledger``, which is the only caller on the request path).

``write_records`` inserts a batch of ``UsageRow``s in the caller's transaction. A record whose
``request_id`` is already stored is skipped (a retried write cannot double
count), and only the records actually inserted are added to the rollup, so
rollup = sum(records) holds whatever is replayed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter, methodcaller
from typing import Any

from sqlalchemy import Connection, Date, DateTime, bindparam, select, update

from metering.core.interrupted import INTERRUPTED
from metering.core.records import RECORD_FIELDS, UsageRow
from metering.storage.compiled import Sql, insert_for, table
from metering.storage.models import COST_COLUMNS, TOKEN_COLUMNS, DailyRollup, UsageRecord
from metering.storage.raw_sql import is_postgres, run, sqlite_value

ROLLUP_SUMS = (*TOKEN_COLUMNS, *COST_COLUMNS)
ROLLUP_KEY = ("day", "key_id", "team_id", "customer_id", "provider", "model")
ERROR_STATUSES_OK = frozenset({"success"})


# Statements from ``storage.compiled`` (Core, compiled once per dialect, run on the
# DBAPI cursor). A record (``core.records.UsageRow``) is a tuple in column order — the
# insert's parameter order (a test checks it): its values go to the driver as they are,
# only SQLite's date columns adapted.
_RECORD_COLUMNS = tuple(UsageRecord.__table__.c[name] for name in RECORD_FIELDS)
_RECORD_WIDTH = len(_RECORD_COLUMNS)
_DATE_POSITIONS = tuple(
    i for i, c in enumerate(_RECORD_COLUMNS) if isinstance(c.type, DateTime | Date)
)
_sqlite_datetime_text = methodcaller("isoformat", " ", "microseconds")  # = sqlite_value
_row_sums = itemgetter(*(RECORD_FIELDS.index(c) for c in ROLLUP_SUMS))
_row_key = itemgetter(
    *(RECORD_FIELDS.index(c) for c in ("started_at", "key_id", "team_id", "customer_id"))
)
_row_names = itemgetter(RECORD_FIELDS.index("provider"), RECORD_FIELDS.index("model"))
_STATUS = RECORD_FIELDS.index("status")
ROLLUP_COLUMNS = (*ROLLUP_KEY, "requests", "errors", *ROLLUP_SUMS)  # the upsert's order
RECORDS_PER_STATEMENT = 200  # × 50 columns: under SQLite's 32,766 parameters


def _insert_records(postgres: bool) -> Any:
    u = table(UsageRecord)
    insert = insert_for(postgres, u).values({name: bindparam(name) for name in RECORD_FIELDS})
    return insert.on_conflict_do_nothing(index_elements=["request_id"]).returning(u.c.request_id)


def _upsert_rollup(postgres: bool) -> Any:
    d = table(DailyRollup)
    insert = insert_for(postgres, d).values({c: bindparam(c) for c in ROLLUP_COLUMNS}).inline()
    sums = {c: d.c[c] + insert.excluded[c] for c in ROLLUP_COLUMNS[len(ROLLUP_KEY) :]}
    return insert.on_conflict_do_update(index_elements=list(ROLLUP_KEY), set_=sums)


INSERT_RECORDS = Sql(_insert_records, rows=True)
UPSERT_ROLLUP = Sql(_upsert_rollup)


# PostgreSQL: a transaction that inserts records holds this advisory lock, shared, until
# it ends; creating a budget takes it exclusively (``exclude_record_writers``) before it
# counts the spend already in its window. Without it, a record inserted but not yet
# committed when the budget is created would be in neither: not in that count (not
# committed) and not charged by its own settlement (which looked for budgets before the
# new one was committed). SQLite needs none: its write transactions run one at a time.
RECORD_WRITERS_LOCK = 0x6D65746572  # "meter"
_SHARE_RECORD_WRITERS_LOCK = f"SELECT pg_advisory_xact_lock_shared({RECORD_WRITERS_LOCK})"
_EXCLUDE_RECORD_WRITERS = f"SELECT pg_advisory_xact_lock({RECORD_WRITERS_LOCK})"


def exclude_record_writers(conn: Connection) -> None:
    """Wait for the transactions inserting records to end, and keep new ones waiting until
    this one ends (PostgreSQL; nothing to do on SQLite)."""
    if is_postgres(conn):
        run(conn, _EXCLUDE_RECORD_WRITERS)


def write_records(conn: Connection, rows: Sequence[UsageRow]) -> list[str]:
    """Insert records; returns the request_ids inserted, in the records' order."""
    if not rows:
        return []
    inserted: set[str] = set()
    postgres = is_postgres(conn)
    if postgres:
        run(conn, _SHARE_RECORD_WRITERS_LOCK)
    for first in range(0, len(rows), RECORDS_PER_STATEMENT):
        chunk = rows[first : first + RECORDS_PER_STATEMENT]
        params = list(itertools.chain.from_iterable(chunk))
        if not postgres:
            for position in _DATE_POSITIONS:
                values = params[position::_RECORD_WIDTH]
                try:  # datetimes, the usual case: one C call each
                    params[position::_RECORD_WIDTH] = list(map(_sqlite_datetime_text, values))
                except (AttributeError, TypeError):  # None, a date, text…
                    params[position::_RECORD_WIDTH] = list(map(sqlite_value, values))
        sql = INSERT_RECORDS.text(postgres, rows=len(chunk))
        found = run(conn, sql, params, adapted=True)
        inserted.update(row[0] for row in found)
    if not inserted:
        return []
    added = [row for row in rows if row[0] in inserted]
    _add_rows_to_rollup(conn, added)
    return [row[0] for row in added]


def _add_rows_to_rollup(conn: Connection, rows: Iterable[Sequence[Any]], sign: int = 1) -> None:
    groups: dict[tuple[Any, ...], tuple[list[tuple[Any, ...]], list[int]]] = {}
    for row in rows:
        started_at, key_id, team_id, customer_id = _row_key(row)
        key = (started_at.date(), key_id, team_id or 0, customer_id or 0, *_row_names(row))
        sums, errors = groups.setdefault(key, ([], [0]))
        sums.append(_row_sums(row))
        if row[_STATUS] not in ERROR_STATUSES_OK:
            errors[0] += 1
    _upsert_groups(conn, groups, sign)


def add_to_rollup(conn: Connection, records: Iterable[UsageRow], *, sign: int) -> None:
    """Add (sign=1) or subtract (sign=-1) records' sums into their daily rollup rows
    (``metering reprice``, which changes records already counted)."""
    _add_rows_to_rollup(conn, records, sign)


def _upsert_groups(
    conn: Connection,
    groups: Mapping[tuple[Any, ...], tuple[list[tuple[Any, ...]], list[int]]],
    sign: int,
) -> None:
    if not groups:
        return
    sql = UPSERT_ROLLUP.text(is_postgres(conn))
    # One statement per group keeps a fixed (sorted) lock order across writers.
    for key, (rows, errors) in sorted(groups.items()):
        sums = [sign * sum(map(int, filter(None, column))) for column in zip(*rows, strict=True)]
        run(conn, sql, [*key, sign * len(rows), sign * errors[0], *sums])


def interrupted_among(conn: Connection, request_ids: Sequence[str]) -> dict[str, UsageRow]:
    """The stored records of these requests that are ``interrupted`` estimates, locked for
    the transaction on PostgreSQL (a rare path: SQLAlchemy Core)."""
    if not request_ids:
        return {}
    u = table(UsageRecord)
    query = select(*(u.c[name] for name in RECORD_FIELDS)).where(
        u.c.request_id.in_(list(request_ids)), u.c.status == INTERRUPTED
    )
    if is_postgres(conn):
        query = query.with_for_update()
    rows = conn.execute(query).mappings()
    return {r["request_id"]: UsageRow.from_mapping(r) for r in rows}


def replace_records(conn: Connection, pairs: Sequence[tuple[UsageRow, UsageRow]]) -> None:
    """Replace stored records (``old``, as ``interrupted_among`` read them) by ``new`` ones
    of the same requests, the daily rollup moved from the old sums to the new."""
    if not pairs:
        return
    u = table(UsageRecord)
    fields = RECORD_FIELDS[1:]
    statement = (
        update(UsageRecord)
        .where(UsageRecord.request_id == bindparam("old_request_id"))
        .where(UsageRecord.status == INTERRUPTED)
        .values({u.c[name]: bindparam(f"new_{name}") for name in fields})
    )
    conn.execute(
        statement,
        [
            {"old_request_id": new.request_id, **{f"new_{n}": getattr(new, n) for n in fields}}
            for _, new in pairs
        ],
    )
    add_to_rollup(conn, [old for old, _ in pairs], sign=-1)
    add_to_rollup(conn, [new for _, new in pairs], sign=1)


def record_of(conn: Connection, *, request_id: str, key_id: int) -> UsageRow | None:
    """The stored record of a request made with ``key_id`` (None: none, or another key's)."""
    u = table(UsageRecord)
    query = select(*(u.c[name] for name in RECORD_FIELDS)).where(
        u.c.request_id == request_id, u.c.key_id == key_id
    )
    row = conn.execute(query).mappings().first()
    return UsageRow.from_mapping(row) if row is not None else None
