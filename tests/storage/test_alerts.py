"""Budget alerts in storage: events written by the ledger's settlement, in its
transaction, once per (alert, budget, threshold, period start)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from metering.errors import InvalidInput, NotFound
from metering.storage import ledger
from metering.storage.alerts import (
    DELIVERED,
    FAILED,
    PENDING,
    add_alert,
    add_test_event,
    alert_history,
    claim_due,
    finish_attempt,
    list_alerts,
    remove_alert,
)
from metering.storage.models import BudgetAlertEvent
from tests.helpers import Org, record
from tests.storage.budgeting import USD, T, set_


def alert(db: Engine, owner_type: str, owner_id: int, *, at: str = "50,80,100") -> int:
    with db.begin() as conn:
        return add_alert(conn, owner_type=owner_type, owner_id=owner_id,
                         url="http://127.0.0.1:9/hook", thresholds=at, payload="json",
                         secret="s3cret", now=T)  # fmt: skip


def spend(db: Engine, org: Org, rid: str, nano: int, *, at: datetime = T) -> None:
    """One record through the ledger, settled against its budgets (as the gateway does)."""
    row = record(request_id=rid, key_id=org.key_id, team_id=org.team_id,
                 customer_id=org.customer_id, cost_nano=nano, started_at=at)  # fmt: skip
    with db.begin() as conn:
        ledger.record(conn, [(row, ledger.Settlement(budgets=True))], now=at)


def events(db: Engine) -> list[tuple[int, str, int, int]]:
    e = BudgetAlertEvent
    with db.connect() as conn:
        rows = conn.execute(
            select(e.alert_id, e.kind, e.threshold_pct, e.spent_nano).order_by(e.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_crossing_50_and_80_writes_one_event_each(db: Engine, org: Org) -> None:
    set_(db, "team", org.team_id, 1, "never")
    alert_id = alert(db, "team", org.team_id)
    spend(db, org, "a", 300_000_000)  # 30 %
    assert events(db) == []
    spend(db, org, "b", 250_000_000)  # 55 %: crosses 50
    spend(db, org, "c", 100_000_000)  # 65 %
    spend(db, org, "c", 100_000_000)  # the same record again (a replay): not charged twice
    spend(db, org, "d", 200_000_000)  # 85 %: crosses 80
    assert events(db) == [
        (alert_id, "threshold", 50, 550_000_000),
        (alert_id, "threshold", 80, 850_000_000),
    ]
    spend(db, org, "e", 150_000_000)  # 100 %: the hard limit
    assert events(db)[-1] == (alert_id, "limit", 100, USD)


def test_one_settlement_crossing_two_thresholds_writes_both(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 1, "never")
    alert_id = alert(db, "key", org.key_id)
    spend(db, org, "big", 900_000_000)
    assert events(db) == [
        (alert_id, "threshold", 50, 900_000_000),
        (alert_id, "threshold", 80, 900_000_000),
    ]


def test_the_event_is_written_in_the_settlements_transaction(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 1, "never")
    alert(db, "key", org.key_id)
    row = record(request_id="r", key_id=org.key_id, team_id=org.team_id,
                 customer_id=org.customer_id, cost_nano=600_000_000, started_at=T)  # fmt: skip
    with db.connect() as conn, conn.begin() as tx:
        ledger.record(conn, [(row, ledger.Settlement(budgets=True))], now=T)
        assert conn.execute(select(func.count()).select_from(BudgetAlertEvent)).scalar() == 1
        tx.rollback()  # the record is not committed: neither is its event
    assert events(db) == []
    spend(db, org, "r", 600_000_000)
    assert [e[2] for e in events(db)] == [50]


def test_a_new_period_alerts_again(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 1, "daily")
    alert(db, "key", org.key_id, at="50")
    spend(db, org, "day1", 600_000_000)
    spend(db, org, "day1-more", 100_000_000)
    spend(db, org, "day2", 600_000_000, at=T + timedelta(days=1))
    e = BudgetAlertEvent
    with db.connect() as conn:
        starts = conn.execute(select(e.period_start).order_by(e.id)).scalars().all()
    assert [s.date() for s in starts] == [T.date(), (T + timedelta(days=1)).date()]


def test_concurrent_writers_write_each_event_once(db: Engine, org: Org) -> None:
    """Eight threads settle 40 records against one budget: each threshold once."""
    set_(db, "customer", org.customer_id, 1, "never")
    alert(db, "customer", org.customer_id, at="10,20,30,40,50,60,70,80,90,100")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(5):
                spend(db, org, f"w{worker}-{i}", 25_000_000)  # 2.5 % each
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(e[2] for e in events(db)) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]


def test_a_budget_without_alerts_costs_no_alert_query(
    sqlite_engine: Engine, org_sqlite: Org
) -> None:
    """The hot path: the only statement that names the alerts is the budgets' lock."""
    db, org = sqlite_engine, org_sqlite
    set_(db, "key", org.key_id, 1, "never")
    seen: list[str] = []
    row = record(request_id="r", key_id=org.key_id, team_id=org.team_id,
                 customer_id=org.customer_id, cost_nano=900_000_000, started_at=T)  # fmt: skip
    with db.connect() as conn:
        dbapi = conn.connection.dbapi_connection
        dbapi.set_trace_callback(seen.append)  # type: ignore[union-attr]
        with conn.begin():
            ledger.record(conn, [(row, ledger.Settlement(budgets=True))], now=T)
        dbapi.set_trace_callback(None)  # type: ignore[union-attr]
    naming = [s for s in seen if "budget_alert" in s]
    assert len(naming) == 1 and "FROM budgets" in naming[0], naming
    assert events(db) == []


@pytest.fixture
def org_sqlite(sqlite_engine: Engine) -> Org:
    from tests.helpers import make_org

    with sqlite_engine.begin() as conn:
        return make_org(conn)


def test_add_list_remove_and_errors(db: Engine, org: Org) -> None:
    with pytest.raises(NotFound, match="metering budgets set"):
        alert(db, "team", org.team_id)
    set_(db, "team", org.team_id, 1, "never")
    for bad in ("0", "50,abc", "101", ""):
        with pytest.raises(InvalidInput, match="whole percentages"):
            alert(db, "team", org.team_id, at=bad)
    with db.begin() as conn, pytest.raises(InvalidInput, match="http"):
        add_alert(conn, owner_type="team", owner_id=org.team_id, url="ftp://x", thresholds="50",
                  payload="json", secret="s", now=T)  # fmt: skip
    alert_id = alert(db, "team", org.team_id, at="80,50,80")
    with db.connect() as conn:
        (info,) = list_alerts(conn)
    assert (info.alert_id, info.owner, info.thresholds) == (alert_id, "search", (50, 80))
    spend(db, org, "r", 600_000_000)
    with db.begin() as conn:
        remove_alert(conn, alert_id)
        assert list_alerts(conn) == []
        assert alert_history(conn) == []
        with pytest.raises(NotFound, match="alerts list"):
            remove_alert(conn, alert_id)


def test_claim_leases_and_finish_marks(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 1, "never")
    alert_id = alert(db, "key", org.key_id)
    spend(db, org, "r", 600_000_000)
    with db.begin() as conn:
        (claimed,) = claim_due(conn, now=T, lease_seconds=60)
    assert (claimed.attempts, claimed.event.threshold_pct, claimed.event.owner) == (1, 50, "alice")
    with db.begin() as conn:  # leased: nobody else gets it until the lease ends
        assert claim_due(conn, now=T + timedelta(seconds=59), lease_seconds=60) == []
        (again,) = claim_due(conn, now=T + timedelta(seconds=60), lease_seconds=60)
        assert again.attempts == 2
        finish_attempt(conn, again.event.event_id, now=T, http_status=500, error="HTTP 500",
                       retry_at=T + timedelta(seconds=90))  # fmt: skip
        assert claim_due(conn, now=T + timedelta(seconds=89), lease_seconds=60) == []
        (third,) = claim_due(conn, now=T + timedelta(seconds=90), lease_seconds=60)
        finish_attempt(conn, third.event.event_id, now=T, http_status=200, error=None,
                       retry_at=None)  # fmt: skip
        test_id = add_test_event(conn, alert_id, now=T)
        (test,) = claim_due(conn, now=T, lease_seconds=60)
        finish_attempt(conn, test_id, now=T, http_status=None, error="refused", retry_at=None)
        history = alert_history(conn, alert_id=alert_id)
    assert [(h["kind"], h["status"], h["attempts"]) for h in history] == [
        ("test", FAILED, 1),
        ("threshold", DELIVERED, 3),
    ]
    assert test.event.kind == "test" and PENDING == "pending"


def test_a_forecast_alert_tells_once_a_period_when_on_course_to_pass(db: Engine, org: Org) -> None:
    """Half-way through January, 60 % spent: on course for 120 % — one forecast event."""
    start = datetime(2026, 1, 1)
    set_(db, "key", org.key_id, 1, "monthly", now=start)
    with db.begin() as conn:
        alert_id = add_alert(conn, owner_type="key", owner_id=org.key_id, url="http://h/",
                             thresholds="90", payload="json", secret="s", now=start,
                             forecast=True)  # fmt: skip
    mid = start + timedelta(days=15, hours=12)  # 50 % of the 31 days
    spend(db, org, "a", 100_000_000, at=start + timedelta(days=1))  # too early to forecast
    spend(db, org, "b", 300_000_000, at=mid)  # 40 %: on course for 80 %
    assert events(db) == []
    spend(db, org, "c", 200_000_000, at=mid)  # 60 %: on course for 120 %
    spend(db, org, "d", 100_000_000, at=mid)  # 70 %: still on course, told already
    assert events(db) == [(alert_id, "forecast", -1, 600_000_000)]
    with db.connect() as conn:
        (event,) = alert_history(conn, alert_id=alert_id)
    assert event["forecast"] == "1.2"


def test_a_forecast_needs_a_period_with_an_end(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 1, "never")
    with db.begin() as conn:
        add_alert(conn, owner_type="key", owner_id=org.key_id, url="http://h/", thresholds="90",
                  payload="json", secret="s", now=T, forecast=True)  # fmt: skip
    spend(db, org, "a", 800_000_000, at=T + timedelta(days=300))
    assert events(db) == []
