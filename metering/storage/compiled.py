"""The ledger's hot statements: built from SQLAlchemy Core, compiled once per dialect.

SQLAlchemy's ``execute`` costs ≈ 80 µs of CPU (cache key, execution context, result
wrapping) against ≈ 11 µs for the same statement on the DBAPI cursor, and the gateway's
single writer runs about a dozen statements a request. So a hot statement is a Core
construct over ``storage.models`` (table and column names, ``ON CONFLICT``, ``FOR
UPDATE`` all from SQLAlchemy), compiled once per dialect to text with positional
placeholders, and run on the cursor by ``raw_sql.run``; no SQL is written by hand.

Sizes: an IN list is an expanding bind parameter (``bindparam(name, expanding=True)``),
which SQLAlchemy compiles as a ``__[POSTCOMPILE_name]`` slot; a multi-row INSERT is the
one-row statement with its VALUES group repeated. ``Sql.text`` fills both for the sizes
given (cached per sizes), so a batch of 200 rows costs no 200-row compile (≈ 200 ms).
``Sql.names`` is the positional order of the parameters (an expanding list counts once,
a repeated row once): callers pass their values in that order, and
``tests/storage/test_compiled_sql.py`` checks it for every statement.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, cast

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.dialects.sqlite.base import SQLiteDialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from metering.storage.raw_sql import Row, is_postgres, run

_SLOT = re.compile(r"__\[POSTCOMPILE_(\w+)\]")


@functools.cache
def _dialect(postgres: bool) -> Any:
    # The base dialects: psycopg's would add ``::TYPE`` casts to the placeholders.
    return PGDialect(paramstyle="format") if postgres else SQLiteDialect(paramstyle="qmark")  # type: ignore[no-untyped-call]


def placeholder(postgres: bool) -> str:
    return "%s" if postgres else "?"


def table(model: Any) -> Table:
    """A mapped class's table, typed as one."""
    return cast(Table, model.__table__)


def insert_for(postgres: bool, table: Any) -> Any:
    """The dialect's INSERT (for ``on_conflict_do_nothing`` / ``do_update``)."""
    return (postgresql if postgres else sqlite).insert(table)


class Sql:
    """One statement: ``build(postgres)`` gives its Core construct for a dialect (most
    ignore the argument: the dialect compiles them apart)."""

    def __init__(self, build: Callable[[bool], ClauseElement], *, rows: bool = False) -> None:
        self._build = build
        self._rows = rows  # an INSERT … VALUES whose row is repeated (``text(rows=n)``)
        self._compiled: dict[bool, tuple[str, tuple[str, ...]]] = {}
        self._defaults: dict[bool, dict[str, Any]] = {}  # binds SQLAlchemy added itself
        self._list_names: dict[bool, tuple[str, ...]] = {}  # its expanding lists, sorted
        self._texts: dict[tuple[Any, ...], str] = {}

    def _compile(self, postgres: bool) -> tuple[str, tuple[str, ...]]:
        found = self._compiled.get(postgres)
        if found is None:
            compiled = self._build(postgres).compile(dialect=_dialect(postgres))
            assert isinstance(compiled, SQLCompiler)
            if "%" in compiled.string.replace("%s", "") and postgres:
                raise AssertionError(f"a literal % in a format-style statement: {compiled}")
            found = (compiled.string, tuple(compiled.positiontup or ()))
            self._compiled[postgres] = found
            # e.g. SQLite's ``OFFSET`` after a ``LIMIT``: a value of SQLAlchemy's own
            self._defaults[postgres] = {
                name: bind.value for name, bind in compiled.binds.items() if not bind.required
            }
            self._list_names[postgres] = tuple(sorted(set(_SLOT.findall(found[0]))))
        return found

    def names(self, postgres: bool) -> tuple[str, ...]:
        """The parameters in positional order (an expanding list once)."""
        return self._compile(postgres)[1]

    def params(self, postgres: bool, values: Mapping[str, Any]) -> list[Any]:
        """``values`` by name → the positional parameters (an expanding list's items in
        its place); for statements run once a batch, not per row."""
        names = self.names(postgres)
        lists = self._list_names[postgres]
        defaults = self._defaults[postgres]
        if not lists and not defaults:
            return [values[name] for name in names]
        out: list[Any] = []
        for name in names:
            if name in lists:
                out.extend(values[name])
            elif name in values or name not in defaults:
                out.append(values[name])
            else:
                out.append(defaults[name])
        return out

    def run(self, conn: Connection, values: Mapping[str, Any], rows: int = 1) -> list[Row]:
        """Execute with ``values`` by name (lists sized from their values)."""
        postgres = is_postgres(conn)
        params = self.params(postgres, values)
        lists = self._list_names[postgres]
        # The key ``text`` caches under, built without its sort (the names are sorted).
        key = (postgres, rows, *((name, len(values[name])) for name in lists))
        sql = self._texts.get(key)
        if sql is None:
            sql = self.text(postgres, rows, **{name: len(values[name]) for name in lists})
        return run(conn, sql, params)

    def text(self, postgres: bool, rows: int = 1, **lists: int) -> str:
        """The SQL text with ``rows`` VALUES rows and each expanding list of its size."""
        key = (postgres, rows, *sorted(lists.items()))
        found = self._texts.get(key)
        if found is None:
            found = self._texts[key] = self._expand(postgres, rows, lists)
        return found

    def _expand(self, postgres: bool, rows: int, lists: dict[str, int]) -> str:
        sql, _ = self._compile(postgres)
        mark = placeholder(postgres)
        if self._rows:
            start = sql.index(" VALUES (") + len(" VALUES ")
            end = sql.index(")", start) + 1
            group = sql[start:end]
            width = group.count(mark)
            if group != "(" + ", ".join([mark] * width) + ")":
                raise AssertionError(f"not a row of placeholders: {group!r}")
            sql = sql[:start] + ", ".join([group] * rows) + sql[end:]
        elif rows != 1:
            raise ValueError("rows are repeated only in a statement made with rows=True")

        def fill(slot: re.Match[str]) -> str:
            size = lists[slot.group(1)]
            if size < 1:
                raise ValueError(f"an empty list for {slot.group(1)}")
            return ", ".join([mark] * size)

        filled = _SLOT.sub(fill, sql)
        if set(lists) != set(_SLOT.findall(sql)):
            raise ValueError(f"sizes {sorted(lists)} for the lists {_SLOT.findall(sql)}")
        return filled
