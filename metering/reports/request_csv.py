"""The per-request CSV body (``metering export --detail requests``), at 10M-row scale.

The database renders every line (``csv_sql``); Python only moves bytes.

* PostgreSQL: one ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` streamed to the file, and
  the cost totals by one SUM, both in one REPEATABLE READ transaction.
* SQLite: the month is split at day boundaries into parts of about equal row counts,
  one per core (a thread per part does not help: sqlite3 takes the GIL back after every
  row). This process renders the first part straight into the file, worker processes
  render the others into sibling files appended in order afterwards, so the file is
  the same as one pass would write. Each part reads its rows and their sums in one
  read transaction (one snapshot per part).

Memory stays bounded by ``CHUNK_ROWS`` lines per process.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from datetime import time as day_start
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, func, select

from metering.reports.common import NO_FILTER, AttributionFilter, DayWindow, month_days
from metering.reports.csv_sql import CellKind, copy_cell, sqlite_cell, sqlite_line, sqlite_text
from metering.reports.files import neutralise_sql
from metering.storage.models import COST_COLUMNS, TOKEN_COLUMNS, DailyRollup, UsageRecord

CHUNK_ROWS = 5_000  # lines fetched per round trip; memory stays bounded by this
PARALLEL_MIN_ROWS = 200_000  # below this one process renders the whole month
MAX_PARTS = 4
MONEY = frozenset((*COST_COLUMNS, "computed_cost", "reported_cost"))
SQLITE_BUSY_TIMEOUT_S = 30.0
# Cells a user or a client chose: neutralised against formula injection (reports.files).
CHOSEN_TEXT = frozenset(("provider", "model", "requested_model", "end_user", "tags"))

Progress = Callable[[int], None]
Totals = dict[str, int]

_FROM = (
    " FROM usage_records"
    " LEFT OUTER JOIN virtual_keys ON virtual_keys.id = usage_records.key_id"
    " LEFT OUTER JOIN teams ON teams.id = usage_records.team_id"
    " LEFT OUTER JOIN customers ON customers.id = usage_records.customer_id"
)
_WINDOW = " WHERE usage_records.started_at >= {lo} AND usage_records.started_at < {hi}"
_ORDER = " ORDER BY usage_records.started_at, usage_records.id"


# SQLite: the key, team and customer cells rendered (quoted) once per name, not per row, in
# TEMP tables joined by INTEGER PRIMARY KEY (a rowid seek; a MATERIALIZED CTE is searched
# through an automatic index: ~2k instructions a line more)
_NAME_TABLES = (
    ("export_key_cells", "virtual_keys"),
    ("export_team_cells", "teams"),
    ("export_customer_cells", "customers"),
)
_SQLITE_FROM = (
    " FROM usage_records"
    " LEFT OUTER JOIN export_key_cells AS key_cells ON key_cells.id = usage_records.key_id"
    " LEFT OUTER JOIN export_team_cells AS team_cells ON team_cells.id = usage_records.team_id"
    " LEFT OUTER JOIN export_customer_cells AS customer_cells"
    " ON customer_cells.id = usage_records.customer_id"
)


def _cells(columns: tuple[str, ...], *, sqlite: bool) -> list[tuple[CellKind, str]]:
    u = "usage_records."
    # SQLite joins the rendered cells (``csv``), PostgreSQL the names (``text``, COPY quotes)
    kind: CellKind = "csv" if sqlite else "text"
    key, team, customer = (
        ("key_cells.cell", "team_cells.cell", "customer_cells.cell")
        if sqlite
        else ("virtual_keys.name", "teams.name", "customers.name")
    )
    named = {  # '#id' (a row gone) never needs quoting
        "key": f"coalesce({key}, '#' || CAST({u}key_id AS TEXT))",
        "team": f"CASE WHEN {u}team_id <> 0 "
        f"THEN coalesce({team}, '#' || CAST({u}team_id AS TEXT)) END",
        "customer": f"CASE WHEN {u}customer_id <> 0 "
        f"THEN coalesce({customer}, '#' || CAST({u}customer_id AS TEXT)) END",
    }
    if not sqlite:  # SQLite's name cells are neutralised once, in their TEMP tables
        names = {"key": "virtual_keys.name", "team": "teams.name", "customer": "customers.name"}
        named = {c: e.replace(names[c], neutralise_sql(names[c])) for c, e in named.items()}
    month = f"substr({u}started_at, 1, 7)" if sqlite else f"to_char({u}started_at, 'YYYY-MM')"
    constant = {"billing_month": month, "currency": "'USD'"}  # neither ever needs quoting
    cells: list[tuple[CellKind, str]] = []
    for column in columns:
        if column in named:
            cells.append((kind, named[column]))
        elif column in constant:
            cells.append(("csv" if sqlite else "text", constant[column]))
        elif column in MONEY:
            cells.append(("usd", u + column))
        elif column in ("started_at", "ended_at"):
            cells.append(("timestamp", u + column))
        elif column == "stream":
            cells.append(("boolean", u + column))
        elif column in TOKEN_COLUMNS or column in ("http_status", "latency_ms", "price_version_id"):
            nullable = UsageRecord.__table__.c[column].nullable
            cells.append(("integer" if nullable else "count", u + column))
        elif column in CHOSEN_TEXT:
            cells.append(("text", neutralise_sql(u + column)))
        else:
            cells.append(("text", u + column))
    return cells


def _sums_sql(param: str, filters: AttributionFilter = NO_FILTER) -> str:
    """count(*) and the cost sums of the window; ``param`` is the driver's placeholder."""
    sums = ", ".join(f"coalesce(sum(usage_records.{c}), 0)" for c in COST_COLUMNS)
    window = _WINDOW.format(lo=param, hi=param) + filters.sql(param)[0]
    return f"SELECT count(*), {sums} FROM usage_records{window}"  # noqa: S608 (no values)


def sqlite_lines_sql(columns: tuple[str, ...], filters: AttributionFilter = NO_FILTER) -> str:
    line = sqlite_line([sqlite_cell(kind, expr) for kind, expr in _cells(columns, sqlite=True)])
    window = _WINDOW.format(lo="?", hi="?") + filters.sql("?")[0]
    return f"SELECT {line}{_SQLITE_FROM}{window}{_ORDER}"


def _name_tables_sql() -> list[str]:
    statements = []
    for table, names in _NAME_TABLES:
        statements.append(f"CREATE TEMP TABLE {table} (id INTEGER PRIMARY KEY, cell TEXT)")
        cells = f"SELECT id, {sqlite_text(neutralise_sql('name'))} FROM {names}"  # noqa: S608 (no values)
        statements.append(f"INSERT INTO temp.{table} {cells}")
    return statements


def postgres_copy_sql(columns: tuple[str, ...], filters: AttributionFilter = NO_FILTER) -> str:
    # psycopg binds %s client-side for COPY: the modulo operators are written %%
    cells = ", ".join(
        copy_cell(kind, expr) for kind, expr in _cells(columns, sqlite=False)
    ).replace("%", "%%")
    window = _WINDOW.format(lo="%s", hi="%s") + filters.sql("%s")[0]
    return f"COPY (SELECT {cells}{_FROM}{window}{_ORDER}) TO STDOUT (FORMAT csv)"


# --- PostgreSQL ---------------------------------------------------------------------------


def copy_postgres(
    conn: Connection,
    window: DayWindow,
    columns: tuple[str, ...],
    fh: IO[bytes],
    progress: Progress | None,
    filters: AttributionFilter = NO_FILTER,
) -> tuple[int, Totals]:
    """COPY the lines into ``fh``; (rows, cost totals) of the same snapshot."""
    params = (window.start, window.end, *filters.sql("%s")[1])
    rows = pending = 0
    with conn.engine.connect() as own:
        own = own.execution_options(isolation_level="REPEATABLE READ")
        with own.begin():
            sums = own.exec_driver_sql(_sums_sql("%s", filters), params).one()
            raw: Any = own.connection.dbapi_connection
            copy_sql = postgres_copy_sql(columns, filters)
            with raw.cursor() as cursor, cursor.copy(copy_sql, params) as copy:
                for line in copy:  # libpq hands COPY OUT data over one row at a time
                    fh.write(line)
                    rows += 1
                    pending += 1
                    if progress is not None and pending == CHUNK_ROWS:
                        progress(pending)
                        pending = 0
    if progress is not None and pending:
        progress(pending)
    return rows, {c: int(v) for c, v in zip(COST_COLUMNS, sums[1:], strict=True)}


# --- SQLite ---------------------------------------------------------------------------------


def _sqlite_text(at: datetime) -> str:
    """How SQLAlchemy stores a DateTime in SQLite (so text comparison orders instants)."""
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


def render_sqlite_part(
    con: sqlite3.Connection,
    columns: tuple[str, ...],
    lo: str,
    hi: str,
    fh: IO[bytes],
    on_chunk: Callable[[int], None],
    filters: AttributionFilter = NO_FILTER,
) -> tuple[int, list[int]]:
    """Write the lines of [lo, hi) to ``fh``; (rows, cost sums) read in one transaction."""
    own_transaction = not con.in_transaction
    if own_transaction:
        con.execute("BEGIN")  # the sums and the lines from one snapshot
    cursor = con.cursor()
    try:
        for statement in _name_tables_sql():  # TEMP: no write to the database itself
            cursor.execute(statement)
        params = (lo, hi, *filters.sql("?")[1])
        sums = cursor.execute(_sums_sql("?", filters), params).fetchone()
        cursor.arraysize = CHUNK_ROWS
        cursor.execute(sqlite_lines_sql(columns, filters), params)
        rows = 0
        while chunk := cursor.fetchmany():
            fh.write("\n".join([line for (line,) in chunk]).encode("utf-8"))
            fh.write(b"\n")
            rows += len(chunk)
            on_chunk(len(chunk))
    finally:
        cursor.close()  # a statement still reading would lock the tables dropped here
        for table, _ in _NAME_TABLES:
            con.execute(f"DROP TABLE IF EXISTS temp.{table}")
        if own_transaction:
            con.rollback()
    assert sums is not None
    return rows, [int(v) for v in sums[1:]]


def _worker(
    database: str,
    columns: tuple[str, ...],
    lo: str,
    hi: str,
    out: str,
    done: Synchronized,  # type: ignore[type-arg]
    results: Any,
    filters: AttributionFilter = NO_FILTER,
) -> None:
    """A worker process: one part into its own file; (rows, sums) or the error sent back."""
    try:
        con = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)
        try:
            with open(out, "wb") as fh:

                def count(n: int) -> None:
                    with done.get_lock():
                        done.value += n

                outcome = render_sqlite_part(con, columns, lo, hi, fh, count, filters)
        finally:
            con.close()
        results.send(("ok", outcome))  # after the file is closed: the parent appends it next
    except BaseException as exc:  # reported by the parent, which fails the export
        results.send(("error", f"{type(exc).__name__}: {exc}"))


@dataclass
class _Part:
    lo: str  # [lo, hi) of started_at, as stored
    hi: str
    file: Path | None = None  # worker parts: their own file, appended afterwards
    process: Any = None
    results: Any = None
    done: Any = None  # rows rendered so far (shared counter)


def plan_parts(conn: Connection, window: DayWindow, cpus: int) -> list[_Part]:
    """Day-aligned parts with about equal requests each (from the daily rollups, which
    only balance the work); one part below PARALLEL_MIN_ROWS or on one core."""
    assert window.start is not None and window.end is not None
    days = month_days(window)
    query = (
        select(DailyRollup.day, func.sum(DailyRollup.requests))
        .where(*window.where_day(DailyRollup.day))
        .group_by(DailyRollup.day)
    )
    per_day = {day: requests for day, requests in conn.execute(query)}
    counts = [int(per_day.get(d) or 0) for d in days]
    total = sum(counts)
    parts = min(cpus, MAX_PARTS) if total >= PARALLEL_MIN_ROWS else 1
    firsts, running = [days[0]], 0
    for day, n in zip(days, counts, strict=True):
        if len(firsts) < parts and running >= total * len(firsts) / parts and day > firsts[-1]:
            firsts.append(day)
        running += n
    starts = [datetime.combine(d, day_start()) for d in firsts]
    ends = [*starts[1:], window.end]
    return [_Part(_sqlite_text(a), _sqlite_text(b)) for a, b in zip(starts, ends, strict=True)]


def append_file(src: Path, fh: IO[bytes]) -> None:
    """Append ``src`` to ``fh``: in the kernel where it can (``copy_file_range``, 1.5 GB in
    ~0.9 s of CPU against ~3.5 s read and written through this process), else by copying."""
    with open(src, "rb", buffering=0) as part:
        left = os.fstat(part.fileno()).st_size
        copy_range = getattr(os, "copy_file_range", None)  # Linux only
        if copy_range is not None:
            try:
                fh.flush()  # the kernel writes at the file's offset: buffered bytes first
                out = fh.fileno()
                while left > 0 and (n := copy_range(part.fileno(), out, left)) > 0:
                    left -= n
            except (OSError, io.UnsupportedOperation):
                if part.tell() > 0:  # failed midway: a fallback would repeat bytes
                    raise
        if left > 0:
            shutil.copyfileobj(part, fh, 16 * 1024 * 1024)  # from where the kernel stopped


def _start_worker(
    ctx: Any, database: str, columns: tuple[str, ...], part: _Part, filters: AttributionFilter
) -> None:
    assert part.file is not None
    part.done = ctx.Value("q", 0)
    part.results, send = ctx.Pipe(duplex=False)
    args = (database, columns, part.lo, part.hi, str(part.file), part.done, send, filters)
    part.process = ctx.Process(target=_worker, args=args, daemon=True)
    part.process.start()


def write_sqlite(
    conn: Connection,
    window: DayWindow,
    columns: tuple[str, ...],
    fh: IO[bytes],
    progress: Progress | None,
    *,
    scratch: Path,
    filters: AttributionFilter = NO_FILTER,
) -> tuple[int, Totals]:
    """Render the window's lines into ``fh``, parts in parallel; (rows, cost totals).
    Worker parts are written to ``scratch``.partN files, removed afterwards."""
    database = conn.engine.url.database
    in_memory = not database or database == ":memory:"
    parts = plan_parts(conn, window, 1 if in_memory else os.cpu_count() or 1)
    conn.rollback()  # end this connection's read transaction: each part reads its own
    workers = parts[1:]
    shown = own = 0

    def report(n: int) -> None:
        nonlocal shown, own
        own += n
        if progress is not None:
            now = own + sum(int(p.done.value) for p in workers)
            if now > shown:
                progress(now - shown)
                shown = now

    try:
        if workers:
            assert database is not None
            ctx = multiprocessing.get_context("spawn")  # no inherited engine, pool or locks
            for i, part in enumerate(workers, start=1):
                part.file = scratch.with_name(f"{scratch.name}.part{i}")
                _start_worker(ctx, database, columns, part, filters)
        if in_memory:
            raw: Any = conn.connection.dbapi_connection
            rows, sums = render_sqlite_part(
                raw, columns, parts[0].lo, parts[0].hi, fh, report, filters
            )
        else:
            assert database is not None
            con = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)
            try:
                rows, sums = render_sqlite_part(
                    con, columns, parts[0].lo, parts[0].hi, fh, report, filters
                )
            finally:
                con.close()
        for part in workers:
            while not part.results.poll(0.2):
                report(0)
                if not part.process.is_alive() and not part.results.poll():
                    raise RuntimeError(f"export worker exited with status {part.process.exitcode}")
            status, payload = part.results.recv()
            if status != "ok":
                raise RuntimeError(f"export worker failed: {payload}")
            assert part.file is not None
            append_file(part.file, fh)
            rows += payload[0]
            sums = [a + b for a, b in zip(sums, payload[1], strict=True)]
        report(0)
    finally:
        for part in workers:
            if part.process is not None:
                if part.process.is_alive():
                    part.process.terminate()
                part.process.join()
            if part.file is not None:
                part.file.unlink(missing_ok=True)
    return rows, dict(zip(COST_COLUMNS, sums, strict=True))
