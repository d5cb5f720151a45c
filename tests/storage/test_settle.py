"""``settle`` for one request outside the gateway's batches (tests, tools): its result,
its checks, and exactly-once across a window change. It runs the batch settlement
(``BatchSettlement``) for one record, locked after the record's insert.

Every test ends with ``assert_budgets_consistent`` (the ``db`` fixture)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine, select

from metering.errors import Conflict
from metering.storage.budgets import SettleResult, settle
from metering.storage.models import Budget, BudgetEvent, BudgetSettlement, Reservation
from metering.storage.records import write_records
from tests.helpers import Org, record, record_and_settle
from tests.storage.budgeting import USD, T, set_, try_reserve


def insert_record(conn: Connection, org: Org, rid: str, nano: int, *, at: datetime = T) -> None:
    owners = {"key_id": org.key_id, "team_id": org.team_id, "customer_id": org.customer_id}
    write_records(conn, [record(request_id=rid, cost_nano=nano, started_at=at, **owners)])


def settle_in(
    conn: Connection, org: Org, rid: str, nano: int, *, at: datetime = T, now: datetime = T
) -> SettleResult:
    owners = {"key_id": org.key_id, "team_id": org.team_id, "customer_id": org.customer_id}
    return settle(conn, request_id=rid, actual_nano=nano, started_at=at, now=now, **owners)


def counters(conn: Connection) -> list[tuple[object, ...]]:
    query = select(Budget.id, Budget.period_start, Budget.spent_nano, Budget.reserved_nano)
    return [tuple(r) for r in conn.execute(query.order_by(Budget.id))]


def test_settle_reports_what_it_released_charged_and_crossed(db: Engine, org: Org) -> None:
    key = set_(db, "key", org.key_id, 10, "daily", soft_pct=20)
    team = set_(db, "team", org.team_id, 10, "daily")
    customer = set_(db, "customer", org.customer_id, 10, "daily", soft_pct=20)
    assert try_reserve(db, org, "r1", 3 * USD)
    with db.begin() as conn:
        insert_record(conn, org, "r1", 2 * USD)
        result = settle_in(conn, org, "r1", 2 * USD)
    # 3 USD released in each of the three budgets; the two soft limits (20 %) crossed.
    assert result == SettleResult(True, 9 * USD, (key, team, customer), (key, customer))
    with db.connect() as conn:
        events = conn.execute(select(BudgetEvent.budget_id)).scalars().all()
        assert sorted(events) == [key, customer]
        assert conn.execute(select(Reservation.request_id)).first() is None


def test_settle_without_a_budget_does_nothing(db: Engine, org: Org) -> None:
    with db.begin() as conn:
        assert settle_in(conn, org, "unrecorded", USD) == SettleResult(True, 0, (), ())
        assert conn.execute(select(BudgetSettlement.request_id)).first() is None


@pytest.mark.parametrize("case", ["unrecorded", "other cost", "other start"])
def test_settle_refuses_what_the_record_does_not_say(db: Engine, org: Org, case: str) -> None:
    set_(db, "key", org.key_id, 10, "daily", now=T - timedelta(days=1))
    with db.begin() as conn:
        record_and_settle(conn, org, request_id="before", cost_nano=2 * USD, started_at=T)
        before = counters(conn)
    with db.connect() as conn:
        if case != "unrecorded":
            insert_record(conn, org, "r1", USD)
        cost = 2 * USD if case == "other cost" else USD
        start = T + timedelta(seconds=1) if case == "other start" else T
        expected = "needs the usage record" if case == "unrecorded" else "differ from the record"
        with pytest.raises(Conflict, match=expected):
            # ``now`` a day later: the budget would roll into a new window.
            settle_in(conn, org, "r1", cost, at=start, now=T + timedelta(days=1))
        assert counters(conn) == before  # nothing written in the transaction either
        assert conn.execute(select(BudgetSettlement.request_id)).scalars().all() == ["before"]
        conn.rollback()


def test_a_repeated_settle_changes_nothing_even_in_a_new_window(db: Engine, org: Org) -> None:
    """A record settled while its start was still ahead of the budget's window (a clock
    behind the gateway's) is not counted there; settling it again once that window has
    come must neither count it nor roll the budget without it."""
    set_(db, "key", org.key_id, 10, "daily")
    ahead = datetime(2026, 1, 16, 0, 0, 5)
    with db.begin() as conn:
        insert_record(conn, org, "ahead", 2 * USD, at=ahead)
        first = settle_in(conn, org, "ahead", 2 * USD, at=ahead, now=ahead - timedelta(minutes=1))
        assert first == SettleResult(True, 0, (), ())
        before = counters(conn)
    assert before[0][1:] == (datetime(2026, 1, 15), 0, 0)
    with db.begin() as conn:
        again = settle_in(conn, org, "ahead", 2 * USD, at=ahead, now=ahead + timedelta(minutes=1))
        assert again == SettleResult(False, 0, (), ())
        assert counters(conn) == before


def test_settle_in_a_new_window_counts_the_record_once(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 10, "daily")
    set_(db, "team", org.team_id, 10, "monthly")
    next_day = T + timedelta(days=1)
    with db.begin() as conn:
        record_and_settle(conn, org, request_id="a", cost_nano=3 * USD, started_at=T)
        record_and_settle(conn, org, request_id="b", cost_nano=USD, started_at=next_day)
        spent = [(r[1], r[2]) for r in counters(conn)]
    assert spent == [(datetime(2026, 1, 16), USD), (datetime(2026, 1, 1), 4 * USD)]
