"""Writing usage records exactly once, and keeping the daily rollup in step (a part of
``storage.ledger``, which is the only caller on the request path).

``write_records`` inserts a batch of ``UsageRow``s in the caller's transaction. A record whose
``request_id`` is already stored is skipped (a retried write cannot double
count), and only the records actually inserted are added to the rollups, so
rollup = sum(records) holds whatever is replayed. The tags of the records inserted go to
``tags`` and ``record_tags`` in one multi-row statement each (``storage.attribution``).

Three rollups, one upsert statement per group each: ``daily_rollups`` (day × key × team
× customer × provider × model), ``daily_end_user_rollups`` (… × end user) and
``daily_tag_rollups`` (… × end user × tag: a record once per tag, '' if untagged).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter, methodcaller
from typing import Any

from sqlalchemy import Connection, Date, DateTime, bindparam, select, update

from metering.core.attribution import tags_of
from metering.core.interrupted import INTERRUPTED
from metering.core.records import RECORD_FIELDS, UsageRow
from metering.storage.attribution import insert_record_tags
from metering.storage.compiled import Sql, insert_for, table
from metering.storage.models import (
    COST_COLUMNS,
    TOKEN_COLUMNS,
    DailyEndUserRollup,
    DailyRollup,
    DailyTagRollup,
    UsageRecord,
)
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
_row_attribution = itemgetter(
    *(RECORD_FIELDS.index(c) for c in ("end_user_scope", "end_user", "tags"))
)
ROLLUP_COLUMNS = (*ROLLUP_KEY, "requests", "errors", *ROLLUP_SUMS)  # the upsert's order
END_USER_KEY = (*ROLLUP_KEY, "end_user_scope", "end_user")
TAG_KEY = (*END_USER_KEY, "tag")
RECORDS_PER_STATEMENT = 200  # × 53 columns: under SQLite's 32,766 parameters


def _insert_records(postgres: bool) -> Any:
    u = table(UsageRecord)
    insert = insert_for(postgres, u).values({name: bindparam(name) for name in RECORD_FIELDS})
    conflict = insert.on_conflict_do_nothing(index_elements=["request_id"])
    return conflict.returning(u.c.request_id, u.c.id)


def _upsert(model: Any, key: tuple[str, ...]) -> Any:
    def build(postgres: bool) -> Any:
        d = table(model)
        columns = (*key, *ROLLUP_COLUMNS[len(ROLLUP_KEY) :])
        insert = insert_for(postgres, d).values({c: bindparam(c) for c in columns}).inline()
        sums = {c: d.c[c] + insert.excluded[c] for c in columns[len(key) :]}
        return insert.on_conflict_do_update(index_elements=list(key), set_=sums)

    return build


INSERT_RECORDS = Sql(_insert_records, rows=True)
UPSERT_ROLLUP = Sql(_upsert(DailyRollup, ROLLUP_KEY))
UPSERT_END_USER_ROLLUP = Sql(_upsert(DailyEndUserRollup, END_USER_KEY))
UPSERT_TAG_ROLLUP = Sql(_upsert(DailyTagRollup, TAG_KEY))


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
    inserted: dict[str, int] = {}  # request_id → record id
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
        inserted.update((row[0], int(row[1])) for row in found)
    if not inserted:
        return []
    added = [row for row in rows if row[0] in inserted]
    insert_record_tags(conn, [(inserted[row.request_id], tags_of(row.tags)) for row in added])
    _add_rows_to_rollup(conn, added)
    return [row[0] for row in added]


Groups = dict[tuple[Any, ...], tuple[list[tuple[Any, ...]], list[int]]]


def _add_rows_to_rollup(conn: Connection, rows: Iterable[Sequence[Any]], sign: int = 1) -> None:
    groups: Groups = {}
    by_end_user: Groups = {}
    by_tag: Groups = {}
    for row in rows:
        started_at, key_id, team_id, customer_id = _row_key(row)
        key = (started_at.date(), key_id, team_id or 0, customer_id or 0, *_row_names(row))
        scope, end_user, tags = _row_attribution(row)
        user_key = (*key, scope or "", end_user or "")
        values = _row_sums(row)
        error = row[_STATUS] not in ERROR_STATUSES_OK
        for found, group in (
            (groups, key),
            (by_end_user, user_key),
            *((by_tag, (*user_key, tag)) for tag in (tags_of(tags) or ("",))),
        ):
            sums, errors = found.setdefault(group, ([], [0]))
            sums.append(values)
            if error:
                errors[0] += 1
    _upsert_groups(conn, UPSERT_ROLLUP, groups, sign)
    _upsert_groups(conn, UPSERT_END_USER_ROLLUP, by_end_user, sign)
    _upsert_groups(conn, UPSERT_TAG_ROLLUP, by_tag, sign)


def add_to_rollup(conn: Connection, records: Iterable[UsageRow], *, sign: int) -> None:
    """Add (sign=1) or subtract (sign=-1) records' sums into their daily rollup rows
    (``metering reprice``, which changes records already counted)."""
    _add_rows_to_rollup(conn, records, sign)


def _upsert_groups(
    conn: Connection,
    statement: Sql,
    groups: Mapping[tuple[Any, ...], tuple[list[tuple[Any, ...]], list[int]]],
    sign: int,
) -> None:
    if not groups:
        return
    sql = statement.text(is_postgres(conn))
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
