"""The monthly CSV (summary or per request) written to any byte sink, for the admin
API's streamed export: the same bytes as ``reports.export.write_export`` writes to a
file (the same row queries and cell rules; the per-request rows by the same SQL), read
row batch by row batch, never held whole."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Callable
from typing import IO, Any, cast

from sqlalchemy import Connection

from metering.reports.common import load_names, parse_month
from metering.reports.export import REQUEST_COLUMNS, SUMMARY_COLUMNS, Detail, _cell, summary_rows
from metering.reports.request_csv import copy_postgres, plan_parts, render_sqlite_part

Sink = Callable[[bytes], int]


class _SinkFile(io.RawIOBase):
    """A write-only binary file over ``sink``."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return self._sink(bytes(data))


def stream_export(conn: Connection, *, month: str, detail: Detail, sink: Sink) -> None:
    window = parse_month(month)
    out = _SinkFile(sink)
    if detail == "summary":
        text = io.TextIOWrapper(
            cast(IO[bytes], out), encoding="utf-8", newline="", write_through=True
        )
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(SUMMARY_COLUMNS)
        for row in summary_rows(conn, window, load_names(conn)):
            writer.writerow([_cell(c, row.get(c)) for c in SUMMARY_COLUMNS])
        text.flush()
        text.detach()
        return
    out.write((",".join(REQUEST_COLUMNS) + "\n").encode("utf-8"))
    if conn.dialect.name == "postgresql":
        copy_postgres(conn, window, REQUEST_COLUMNS, cast(IO[bytes], out), None)
        return
    (part,) = plan_parts(conn, window, 1)
    raw: Any = conn.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    conn.rollback()  # the part reads in its own transaction, as write_sqlite's do
    render_sqlite_part(raw, REQUEST_COLUMNS, part.lo, part.hi, cast(IO[bytes], out), lambda n: None)
