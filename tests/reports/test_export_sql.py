"""The per-request CSV is rendered by the database (``csv_sql``); it must be byte-identical
to the cell-by-cell Python rendering (``request_rows`` + ``csv.writer``), on awkward
values too: names with commas, quotes and line breaks, negative adjustments, whole
dollars, single nano-dollars, NULL reported cost and latency, the epoch of a day."""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, update

from metering.core.money import format_usd
from metering.reports import request_csv
from metering.reports.common import load_names, parse_month
from metering.reports.csv_sql import sqlite_cell
from metering.reports.export import REQUEST_COLUMNS, _cell, request_rows, write_export
from metering.storage.models import COST_COLUMNS, Team, UsageRecord, VirtualKey
from metering.storage.records import write_records
from tests.reports.factory import Org


def _python_rendering(engine: Engine) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(REQUEST_COLUMNS)
    with engine.connect() as conn:
        for row in request_rows(conn, parse_month("2026-11"), load_names(conn)):
            writer.writerow([_cell(c, row.get(c)) for c in REQUEST_COLUMNS])
    return out.getvalue()


def _awkward(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = next(r for r in records if r.started_at.month == 11)
    amounts = (
        -1,
        -1_000_000_000,
        -2_500_000_001,
        1,
        7_000_000_000,
        123_456_789_012,
        999_999_999,
    )
    out = []
    for i, amount in enumerate(amounts):
        at = datetime(2026, 11, 2, 0, 0, i)
        rec = base._replace(request_id=f"awkward-{i}", started_at=at, ended_at=at)
        rec = rec._replace(adjustment_cost=amount, reported_cost=None, total_cost=amount)
        rec = rec._replace(computed_cost=amount if i % 2 else None, latency_ms=None)
        rec = rec._replace(model=f'm,"odd"\n{i}', cache_hit_type="semantic" if i % 2 else None)
        if i == 2:  # an empty text is an empty cell (COPY would quote it: "")
            rec = rec._replace(cache_hit_type="", request_type="")
        if i == 4:
            rec = rec._replace(model="\\.")
        rec = rec._replace(stream=bool(i % 2), http_status=None if i == 3 else 200)
        out.append(rec)
    return out


def _store_awkward(engine: Engine, records: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        write_records(conn, _awkward(records))
        conn.execute(update(VirtualKey).where(VirtualKey.id == 1).values(name='al,"ice"'))
        conn.execute(update(Team).where(Team.id == 2).values(name="m\nl"))
        # a team id whose row is gone is shown as #id, like the Python rendering does
        conn.execute(
            update(UsageRecord).where(UsageRecord.request_id == "awkward-0").values(team_id=99)
        )


def test_sql_lines_equal_python_cells(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]], tmp_path: Path
) -> None:
    _, records = month_data
    _store_awkward(engine, records)
    with engine.connect() as conn:
        result = write_export(conn, month="2026-11", detail="requests", out=tmp_path / "r.csv")
    expected = _python_rendering(engine)
    assert (tmp_path / "r.csv").read_bytes().decode("utf-8") == expected
    rows = list(csv.DictReader(io.StringIO(expected)))
    assert result.rows == len(rows)
    november = [r for r in records if r.started_at.month == 11] + _awkward(records)
    for column in COST_COLUMNS:
        assert result.totals[column] == sum(getattr(r, column) for r in november), column


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL: one COPY, no parts
def test_sqlite_parts_in_worker_processes_write_the_same_file(
    db_url: str,
    engine: Engine,
    month_data: tuple[Org, list[dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The month split over 3 processes (day-aligned parts) gives the one-pass file."""
    assert db_url.startswith("sqlite")
    _, records = month_data
    _store_awkward(engine, records)
    monkeypatch.setattr(request_csv, "PARALLEL_MIN_ROWS", 1)
    monkeypatch.setattr(request_csv, "CHUNK_ROWS", 7)
    monkeypatch.setattr(request_csv.os, "cpu_count", lambda: 3)
    steps: list[int] = []
    with engine.connect() as conn:
        parts = request_csv.plan_parts(conn, parse_month("2026-11"), 3)
        result = write_export(
            conn, month="2026-11", detail="requests", out=tmp_path / "r.csv", progress=steps.append
        )
    assert len(parts) == 3 and parts[0].lo < parts[1].lo < parts[2].lo < parts[2].hi
    expected = _python_rendering(engine)
    assert (tmp_path / "r.csv").read_bytes().decode("utf-8") == expected
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]  # part files removed
    november = [r for r in records if r.started_at.month == 11] + _awkward(records)
    assert result.rows == len(november) == sum(steps)
    for column in COST_COLUMNS:
        assert result.totals[column] == sum(getattr(r, column) for r in november), column


def test_a_carriage_return_is_quoted(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]], tmp_path: Path
) -> None:
    """RFC 4180 (and COPY): a cell holding CR is quoted. csv.writer on Python 3.11 with
    "\\n" line ends leaves it bare, the one place the file differs from it on purpose."""
    _, records = month_data
    (rec,) = _awkward(records)[:1]
    with engine.begin() as conn:
        write_records(conn, [rec._replace(request_type="a\rb")])
    with engine.connect() as conn:
        write_export(conn, month="2026-11", detail="requests", out=tmp_path / "r.csv")
    assert b',"a\rb",' in (tmp_path / "r.csv").read_bytes()


_EDGES = (0, 1, 9, 10, 99_999_999, 100_000_000, 500_000_000, 999_999_999, 1_000_000_000)


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.sampled_from(_EDGES).flatmap(lambda v: st.sampled_from((v, -v))),
            st.integers(-(2**62), 2**62),
            st.builds(lambda d, z: d * 10**z, st.integers(1, 10**9), st.integers(0, 9)),
        ),
        max_size=200,
    )
)
def test_sqlite_amounts_equal_format_usd(amounts: list[int | None]) -> None:
    """The SQLite amount cell (constant prefix + stripped integer for sub-dollar amounts,
    one text otherwise) is ``format_usd`` to the digit, NULL an empty cell."""
    fmt, args = sqlite_cell("usd", "x")
    con = sqlite3.connect(":memory:")
    try:
        con.execute("CREATE TABLE t (i INTEGER PRIMARY KEY, x BIGINT)")
        con.executemany("INSERT INTO t (x) VALUES (?)", [(a,) for a in amounts])
        query = f"SELECT printf('{fmt}', {args}) FROM t ORDER BY i"  # noqa: S608 (no values)
        got = [line for (line,) in con.execute(query)]
    finally:
        con.close()
    assert got == ["" if a is None else format_usd(a) for a in amounts]


def test_append_file_in_the_kernel_or_by_copying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part is appended after what is already written (buffered bytes included), by
    ``copy_file_range`` into a file and by plain copying into anything else."""
    part = tmp_path / "r.csv.part1"
    part.write_bytes(b"b,2\n" * 50_000)
    with (tmp_path / "out.csv").open("wb") as fh:
        fh.write(b"a,1\n")
        request_csv.append_file(part, fh)
        fh.write(b"c,3\n")
    assert (tmp_path / "out.csv").read_bytes() == b"a,1\n" + part.read_bytes() + b"c,3\n"
    memory = io.BytesIO(b"a,1\n")
    memory.seek(0, io.SEEK_END)
    request_csv.append_file(part, memory)  # no file descriptor
    assert memory.getvalue() == b"a,1\n" + part.read_bytes()
    monkeypatch.delattr(request_csv.os, "copy_file_range", raising=False)
    with (tmp_path / "out2.csv").open("wb") as fh:
        fh.write(b"a,1\n")
        request_csv.append_file(part, fh)
    assert (tmp_path / "out2.csv").read_bytes() == b"a,1\n" + part.read_bytes()
