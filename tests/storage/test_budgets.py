"""Budgets on real SQLite and PostgreSQL: limits, owners, periods, expiry, concurrency.

Every test ends with ``assert_budgets_consistent``: counters equal the records."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, update

from metering.storage.budgets import (
    budget_status,
    check_budget_counters,
    rebuild_budget_counters,
    release,
    release_expired,
    reserve,
    set_budget,
    settle,
)
from metering.storage.engine import make_engine
from metering.storage.models import Budget, BudgetEvent, Reservation
from tests.helpers import Org, assert_budgets_consistent, make_org, record_and_settle
from tests.storage.budgeting import USD, T, set_, settle_, try_reserve


def status(db: Engine, org: Org, *, now: datetime = T) -> dict[str, dict[str, object]]:
    with db.connect() as conn:
        rows = budget_status(
            conn, now=now, key_id=org.key_id, team_id=org.team_id, customer_id=org.customer_id
        )
    return {r.owner_type: r.as_dict() for r in rows}


def test_reserve_without_budgets_is_accepted(db: Engine, org: Org) -> None:
    assert try_reserve(db, org, "r1", 10 * USD)
    settle_(db, org, "r1", 3 * USD)


def test_key_budget_refuses_what_would_pass_its_limit(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 10, "monthly")
    assert try_reserve(db, org, "r1", 6 * USD)
    with db.begin() as conn:
        result = reserve(
            conn,
            request_id="r2",
            key_id=org.key_id,
            team_id=org.team_id,
            customer_id=org.customer_id,
            amount_nano=5 * USD,
            now=T,
            ttl_seconds=600,
        )
    assert not result.accepted
    refusal = result.refusal
    assert refusal is not None
    assert (refusal.owner_type, refusal.owner_name) == ("key", "alice")
    assert (refusal.limit_nano, refusal.spent_nano, refusal.reserved_nano) == (10 * USD, 0, 6 * USD)
    assert refusal.next_reset == datetime(2026, 2, 1)
    assert "key budget of key 'alice'" in refusal.message()
    assert refusal.error().limit_nano == 10 * USD
    assert try_reserve(db, org, "r3", 4 * USD)  # exactly up to the limit
    settle_(db, org, "r1", 2 * USD)
    settle_(db, org, "r3", 4 * USD)
    assert status(db, org)["key"]["spent"] == "6"
    assert status(db, org)["key"]["remaining"] == "4"


@pytest.mark.parametrize("owner", ["team", "customer"])
def test_team_and_customer_budgets_refuse_what_the_key_allows(
    db: Engine, org: Org, owner: str
) -> None:
    set_(db, "key", org.key_id, 100, "monthly")
    set_(db, owner, org.team_id if owner == "team" else org.customer_id, 5, "monthly")
    # The other key of the team (and customer) already spent 4 of the shared 5.
    with db.begin() as conn:
        record_and_settle(
            conn, org, request_id="other", cost_nano=4 * USD, started_at=T, key_id=org.other_key_id
        )
    with db.begin() as conn:
        result = reserve(
            conn,
            request_id="r1",
            key_id=org.key_id,
            team_id=org.team_id,
            customer_id=org.customer_id,
            amount_nano=2 * USD,
            now=T,
            ttl_seconds=600,
        )
    assert not result.accepted
    assert result.refusal is not None and result.refusal.owner_type == owner
    assert result.refusal.spent_nano == 4 * USD
    # Nothing was reserved anywhere: the key's own budget is untouched.
    assert status(db, org)["key"]["reserved"] == "0"
    assert try_reserve(db, org, "r2", 1 * USD)
    settle_(db, org, "r2", 1 * USD)


def test_settle_replaces_reservation_and_is_idempotent(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 10, "daily")
    set_(db, "team", org.team_id, 20, "daily")
    assert try_reserve(db, org, "r1", 3 * USD)
    assert status(db, org)["team"]["reserved"] == "3"
    settle_(db, org, "r1", USD // 4)
    with db.begin() as conn:
        again = settle(
            conn,
            request_id="r1",
            key_id=org.key_id,
            team_id=org.team_id,
            customer_id=org.customer_id,
            actual_nano=USD // 4,
            started_at=T,
            now=T,
        )
    assert not again.settled
    s = status(db, org)
    assert (s["key"]["spent"], s["key"]["reserved"]) == ("0.25", "0")
    assert (s["team"]["spent"], s["team"]["reserved"]) == ("0.25", "0")


def test_release_gives_back_a_request_that_never_went_upstream(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 10, "daily")
    assert try_reserve(db, org, "r1", 3 * USD)
    with db.begin() as conn:
        assert release(conn, request_id="r1", now=T) == 3 * USD
    assert status(db, org)["key"]["reserved"] == "0"


def test_expired_reservation_is_released_and_spent_unchanged(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 10, "monthly")
    settle_(db, org, "done", 2 * USD)
    assert try_reserve(db, org, "crashed", 7 * USD, ttl=60)
    assert not try_reserve(db, org, "blocked", 2 * USD, now=T + timedelta(seconds=30))
    with db.begin() as conn:
        assert release_expired(conn, now=T + timedelta(seconds=59)).reservations == 0
    with db.begin() as conn:
        swept = release_expired(conn, now=T + timedelta(seconds=60))
    assert (swept.reservations, swept.amount_nano) == (1, 7 * USD)
    s = status(db, org)["key"]
    assert (s["spent"], s["reserved"]) == ("2", "0")
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Reservation)).scalar_one() == 0


def test_reserve_sweeps_expired_reservations_of_its_budgets(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 10, "monthly")
    assert try_reserve(db, org, "crashed", 9 * USD, ttl=60)
    assert try_reserve(db, org, "next", 9 * USD, now=T + timedelta(minutes=2))
    settle_(db, org, "next", USD)


def test_late_settlement_after_sweep_still_charges(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 10, "monthly")
    assert try_reserve(db, org, "slow", 5 * USD, ttl=60)
    with db.begin() as conn:
        release_expired(conn, now=T + timedelta(minutes=5))
    with db.begin() as conn:
        record_and_settle(
            conn, org, request_id="slow", cost_nano=3 * USD, started_at=T, now=T + timedelta(1)
        )
    s = status(db, org, now=T + timedelta(1))["key"]
    assert (s["spent"], s["reserved"]) == ("3", "0")


def test_spend_in_one_month_does_not_count_in_the_next(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 10, "monthly")
    settle_(db, org, "jan", 9 * USD, at=datetime(2026, 1, 31, 23, 59))
    assert not try_reserve(db, org, "jan2", 2 * USD, now=datetime(2026, 1, 31, 23, 59, 30))
    feb = datetime(2026, 2, 1, 0, 0, 1)
    assert status(db, org, now=feb)["key"]["spent"] == "0"  # read-only view of February
    assert try_reserve(db, org, "feb", 10 * USD, now=feb)
    settle_(db, org, "feb", 1 * USD, at=feb)
    s = status(db, org, now=feb)["key"]
    assert (s["spent"], s["period_start"], s["next_reset"]) == (
        "1",
        "2026-02-01T00:00:00Z",
        "2026-03-01T00:00:00Z",
    )


def test_request_started_last_period_settles_without_charging_this_one(
    db: Engine, org: Org
) -> None:
    set_(db, "key", org.key_id, 10, "daily", now=datetime(2026, 1, 15, 23, 59))
    assert try_reserve(db, org, "late", 4 * USD, now=datetime(2026, 1, 15, 23, 59))
    assert try_reserve(db, org, "new", 5 * USD, now=datetime(2026, 1, 16, 0, 1))  # rolled
    with db.begin() as conn:
        record_and_settle(
            conn,
            org,
            request_id="late",
            cost_nano=4 * USD,
            started_at=datetime(2026, 1, 15, 23, 59),
            now=datetime(2026, 1, 16, 0, 2),
        )
    s = status(db, org, now=datetime(2026, 1, 16, 0, 2))["key"]
    assert (s["spent"], s["reserved"]) == ("0", "5")
    with db.begin() as conn:
        release(conn, request_id="new", now=datetime(2026, 1, 16, 0, 3))


def test_weekly_budget_resets_on_monday_in_its_zone(db: Engine, org: Org) -> None:
    sunday = datetime(2026, 3, 1, 12)  # a Sunday
    set_(db, "key", org.key_id, 10, "weekly", timezone="Europe/Berlin", now=sunday)
    settle_(db, org, "sun", 9 * USD, at=sunday)
    late_sunday_utc = datetime(2026, 3, 1, 23, 30)  # already Monday 00:30 in Berlin
    assert try_reserve(db, org, "mon", 10 * USD, now=late_sunday_utc)
    s = status(db, org, now=late_sunday_utc)["key"]
    assert (s["period_start"], s["next_reset"]) == ("2026-03-01T23:00:00Z", "2026-03-08T23:00:00Z")
    assert s["spent"] == "0"
    with db.begin() as conn:
        release(conn, request_id="mon", now=late_sunday_utc)


def test_rolling_window_starts_from_zero(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 10, "6h", now=datetime(2026, 1, 15, 10, 20))
    settle_(db, org, "a", 8 * USD, at=datetime(2026, 1, 15, 15, 59))
    assert not try_reserve(db, org, "b", 3 * USD, now=datetime(2026, 1, 15, 15, 59, 59))
    assert try_reserve(db, org, "c", 10 * USD, now=datetime(2026, 1, 15, 16))
    s = status(db, org, now=datetime(2026, 1, 15, 16))["key"]
    assert (s["period_start"], s["next_reset"]) == ("2026-01-15T16:00:00Z", "2026-01-15T22:00:00Z")
    settle_(db, org, "c", USD, at=datetime(2026, 1, 15, 16))


def test_never_budget_counts_lifetime_spend(db: Engine, org: Org) -> None:
    settle_(db, org, "old", 3 * USD, at=datetime(2020, 5, 1))
    set_(db, "key", org.key_id, 5, "never")
    s = status(db, org, now=datetime(2030, 1, 1))["key"]
    assert (s["spent"], s["next_reset"]) == ("3", None)
    assert not try_reserve(db, org, "r", 3 * USD, now=datetime(2030, 1, 1))


def test_changing_the_period_recomputes_spend_of_the_new_window(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 100, "monthly", now=datetime(2026, 1, 1))
    settle_(db, org, "early", 7 * USD, at=datetime(2026, 1, 5))
    settle_(db, org, "today", 2 * USD, at=datetime(2026, 1, 15, 9))
    assert status(db, org)["key"]["spent"] == "9"
    set_(db, "key", org.key_id, 100, "daily")
    assert status(db, org)["key"]["spent"] == "2"  # no stale spend from Jan 5
    set_(db, "key", org.key_id, 100, "monthly")
    assert status(db, org)["key"]["spent"] == "9"  # the month's spend is not lost


def test_changing_the_limit_keeps_the_current_spend(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 10, "monthly")
    settle_(db, org, "a", 6 * USD)
    set_(db, "key", org.key_id, 5, "monthly")
    s = status(db, org)["key"]
    assert (s["limit"], s["spent"], s["remaining"]) == ("5", "6", "0")
    assert not try_reserve(db, org, "b", 1)


def test_soft_limit_crossing_is_recorded_once_per_period(
    db: Engine, org: Org, caplog: pytest.LogCaptureFixture
) -> None:
    set_(db, "key", org.key_id, 10, "daily", soft_pct=50)
    settle_(db, org, "a", 4 * USD)
    assert status(db, org)["key"]["soft_limit_crossed"] is False
    with caplog.at_level("WARNING", logger="metering.budgets"):
        settle_(db, org, "b", 2 * USD)
        settle_(db, org, "c", 1 * USD)
    assert status(db, org)["key"]["soft_limit_crossed"] is True
    assert sum("soft limit crossed" in r.message for r in caplog.records) == 1
    next_day = T + timedelta(days=1)
    settle_(db, org, "d", 6 * USD, at=next_day)
    with db.connect() as conn:
        events = conn.execute(select(BudgetEvent.period_start).order_by(BudgetEvent.id)).all()
    assert [e[0] for e in events] == [datetime(2026, 1, 15), datetime(2026, 1, 16)]


def test_check_budget_counters_reports_and_rebuild_repairs(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 10, "monthly")
    settle_(db, org, "a", 2 * USD)
    with db.begin() as conn:
        conn.execute(update(Budget).values(spent_nano=5, reserved_nano=7))
    with db.connect() as conn:
        problems = check_budget_counters(conn, now=T)
    assert len(problems) == 2
    assert "spent $0.000000005 but its records since 2026-01-01T00:00:00 sum to $2" in problems[0]
    with db.begin() as conn:
        assert len(rebuild_budget_counters(conn, now=T)) == 1
    assert status(db, org)["key"]["spent"] == "2"


@pytest.mark.parametrize("binding", ["key", "customer"])
def test_concurrent_reservations_never_overspend(db_url: str, binding: str) -> None:
    """A budget that fits exactly K worst cases gets 10×K concurrent requests, each in its
    own connection and transaction: exactly K are admitted, and spend stays ≤ the limit."""
    k = 5
    engine = make_engine(db_url, pool_size=10 * k + 2, max_overflow=0)
    try:
        with engine.begin() as conn:
            org = make_org(conn, prefix="c")
        worst = 7 * USD // 10
        set_(engine, "team", org.team_id, 100, "monthly")
        set_(engine, "key", org.key_id, 100, "monthly")
        with engine.begin() as conn:
            set_budget(
                conn,
                owner_type=binding,
                owner_id=org.key_id if binding == "key" else org.customer_id,
                limit_nano=k * worst,
                period="monthly",
                now=T,
            )
        barrier = threading.Barrier(10 * k)
        accepted: list[str] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def request(i: int) -> None:
            try:
                barrier.wait()
                if try_reserve(engine, org, f"req-{i}", worst):
                    with lock:
                        accepted.append(f"req-{i}")
            except BaseException as exc:  # surfaced below; a thread must not swallow it
                errors.append(exc)

        threads = [threading.Thread(target=request, args=(i,)) for i in range(10 * k)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(accepted) == k
        for rid in accepted:  # the upstream honoured max_tokens: actual ≤ worst case
            settle_(engine, org, rid, worst)
        with engine.connect() as conn:
            limit, spent, reserved = conn.execute(
                select(Budget.limit_nano, Budget.spent_nano, Budget.reserved_nano).where(
                    Budget.owner_type == binding
                )
            ).one()
        assert (spent, reserved) == (k * worst, 0)
        assert spent <= limit
        assert not try_reserve(engine, org, "one-more", 1)
        assert_budgets_consistent(engine)
    finally:
        engine.dispose()


def test_budgets_removed_and_set_again_under_traffic(db: Engine, org: Org) -> None:
    """``budgets remove`` racing requests that reserve, settle and release in the same
    budget (4 threads against a set/remove loop, each in its own transaction): a removal
    is refused while a reservation is held or goes through between them; no request
    fails, none reserves in a deleted budget, and the counters equal the records."""
    from metering.errors import Conflict, NotFound
    from metering.storage.budgets import remove_budget

    stop = threading.Event()
    errors: list[BaseException] = []
    outcomes = {"removed": 0, "refused": 0}

    def traffic(worker: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            rid = f"w{worker}-{i}"
            try:
                if try_reserve(db, org, rid, USD // 1000):
                    if i % 2:
                        settle_(db, org, rid, USD // 2000)
                    else:
                        with db.begin() as conn:
                            release(conn, request_id=rid, now=T)
            except BaseException as exc:  # surfaced below
                errors.append(exc)
                return

    def owner() -> None:
        while not stop.is_set():
            try:
                set_(db, "key", org.key_id, 1000, "monthly")
                with db.begin() as conn:
                    remove_budget(conn, owner_type="key", owner_id=org.key_id, owner_name="alice")
                outcomes["removed"] += 1
            except Conflict:
                outcomes["refused"] += 1
            except NotFound:
                pass
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=traffic, args=(w,)) for w in range(4)]
    threads.append(threading.Thread(target=owner))
    for t in threads:
        t.start()
    stop.wait(3)
    deadline = time.monotonic() + 60  # on a loaded host: until one removal has gone through
    while outcomes["removed"] == 0 and not errors and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert outcomes["removed"] > 0
    with db.connect() as conn:
        left = conn.execute(select(func.count()).select_from(Reservation)).scalar_one()
    assert left == 0  # every reservation was settled or released
    # A budget created while a record was being inserted counts it once: on PostgreSQL this
    # failed before record writers and budget creation excluded each other.
    assert_budgets_consistent(db)
