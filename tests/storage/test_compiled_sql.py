"""The ledger's statements (``storage.compiled``): built from Core, compiled once per
dialect; each takes its parameters in the order its caller passes them, and a repeated
row or a filled list is exactly what compiling the larger statement would give."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import bindparam, literal_column, select

from metering.core.interrupted import InFlightCall
from metering.core.records import RECORD_FIELDS
from metering.storage import budget_statements, in_flight, rate_limits, records
from metering.storage.compiled import Sql, _dialect, insert_for, table
from metering.storage.models import Reservation

DIALECTS = pytest.mark.parametrize("postgres", [False, True], ids=["sqlite", "postgresql"])


@DIALECTS
def test_row_statements_take_their_callers_column_order(postgres: bool) -> None:
    assert records.INSERT_RECORDS.names(postgres) == RECORD_FIELDS
    assert records.UPSERT_ROLLUP.names(postgres) == records.ROLLUP_COLUMNS
    assert budget_statements.RESERVE.names(postgres) == budget_statements.RESERVATION_COLUMNS
    assert budget_statements.MARK_SETTLED.names(postgres) == ("request_id", "settled_at")
    assert in_flight.INSERT_CALLS.names(postgres) == InFlightCall._fields


@DIALECTS
@pytest.mark.parametrize("rows", [1, 2, 7, 200])
def test_repeated_rows_have_one_placeholder_a_value(postgres: bool, rows: int) -> None:
    mark = "%s" if postgres else "?"
    for sql, width in (
        (records.INSERT_RECORDS, len(RECORD_FIELDS)),
        (budget_statements.RESERVE, 5),
        (budget_statements.MARK_SETTLED, 2),
        (in_flight.INSERT_CALLS, len(InFlightCall._fields)),
    ):
        assert sql.text(postgres, rows=rows).count(mark) == width * rows


@DIALECTS
def test_a_repeated_row_is_the_compiled_multi_row_statement(postgres: bool) -> None:
    columns = budget_statements.RESERVATION_COLUMNS

    def three_rows(pg: bool) -> Any:
        r = table(Reservation)
        values = [{c: bindparam(f"{c}_{i}") for c in columns} for i in range(3)]
        return insert_for(pg, r).values(values).inline()

    compiled = three_rows(postgres).compile(dialect=_dialect(postgres))
    assert budget_statements.RESERVE.text(postgres, rows=3) == compiled.string


@DIALECTS
@pytest.mark.parametrize("size", [1, 2, 7, 200])
def test_lists_are_filled_to_their_size(postgres: bool, size: int) -> None:
    mark = "%s" if postgres else "?"
    ids = list(range(size))
    lock = budget_statements.lock_statement(True, False, True, True)
    values = {"key_type": "key", "key_ids": ids, "customer_type": "customer",
              "customer_ids": ids, "held": [str(i) for i in ids]}  # fmt: skip
    assert lock.names(postgres) == ("key_type", "key_ids", "customer_type", "customer_ids", "held")
    params = lock.params(postgres, values)
    assert params == ["key", *ids, "customer", *ids, *values["held"]]
    text = lock.text(postgres, key_ids=size, customer_ids=size, held=size)
    assert text.count(mark) == len(params)
    assert ("FOR UPDATE" in text) is postgres
    windows = rate_limits.LOCK_WINDOWS
    assert windows.names(postgres) == ("keys", "windows")
    assert windows.text(postgres, keys=size, windows=2).count(mark) == size + 2
    for sql in (budget_statements.TAKEN, budget_statements.DROP_HELD, in_flight.DELETE_CALLS):
        assert sql.names(postgres) == ("ids",)
        assert sql.text(postgres, ids=size).count(mark) == size


@DIALECTS
def test_clock_statements_use_the_servers_clock_on_postgresql(postgres: bool) -> None:
    register = in_flight.REGISTER
    if postgres:
        assert register.names(True) == ("host", "pid")
        assert "timezone('UTC', now())" in register.text(True)
        stale = in_flight._stale(True, True)
        assert stale.names(True) == ("own", "stale_seconds", "ids", "limit")
        assert "FOR UPDATE OF calls_in_flight SKIP LOCKED" in stale.text(True, ids=3)
    else:
        assert register.names(False) == ("host", "pid", "now", "now")
        stale = in_flight._stale(True, True)
        assert "FOR UPDATE" not in stale.text(False, ids=3)
        # SQLite's OFFSET after the LIMIT is SQLAlchemy's own value: filled in
        params = stale.params(False, {"own": 1, "cutoff": 0, "ids": ["a"], "limit": 5})
        assert params[:4] == [1, 0, "a", 5] and len(params) == len(stale.names(False))


def test_sizes_must_match_the_statement() -> None:
    with pytest.raises(ValueError, match="empty list"):
        budget_statements.TAKEN.text(False, ids=0)
    with pytest.raises(ValueError, match="sizes"):
        budget_statements.TAKEN.text(False, ids=1, other=2)
    with pytest.raises(ValueError, match="rows=True"):
        budget_statements.TAKEN.text(False, rows=2, ids=1)
    with pytest.raises(AssertionError, match="literal %"):
        Sql(lambda pg: select(literal_column("'50%'"))).text(True)
