"""Alert delivery (``gateway.alert_delivery``): events written by real settlements are
POSTed to a real receiver on loopback, signed, retried, never lost, never sent twice by
two deliverers at once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from metering.gateway.alert_delivery import AlertDeliverer
from metering.storage.alerts import add_alert, alert_history, claim_due
from metering.storage.engine import make_engine
from metering.storage.keys import utcnow
from metering.storage.models import BudgetAlertEvent
from tests.alert_receiver import Receiver
from tests.helpers import Org, make_org
from tests.storage.budgeting import set_
from tests.storage.test_alerts import spend

SECRET = "whsec_test"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver().start()
    try:
        yield got
    finally:
        got.stop()


@pytest.fixture
def org(engine: Engine) -> Org:
    with engine.begin() as conn:
        return make_org(conn)


def watch(engine: Engine, org: Org, url: str, *, payload: str = "json", at: str = "50,80") -> int:
    set_(engine, "team", org.team_id, 1, "monthly", now=utcnow())
    with engine.begin() as conn:
        return add_alert(conn, owner_type="team", owner_id=org.team_id, url=url, thresholds=at,
                         payload=payload, secret=SECRET, now=utcnow())  # fmt: skip


def fast(engine: Engine, **kw: float) -> AlertDeliverer:
    return AlertDeliverer(engine, poll_seconds=0.05, timeout_seconds=5, base_delay_seconds=0.05,
                          **kw)  # type: ignore[arg-type]  # fmt: skip


async def run_for(deliverer: AlertDeliverer, seconds: float) -> None:
    """Started, left running for ``seconds``, stopped (as ``metering serve`` does)."""
    await deliverer.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await deliverer.stop()


def test_crossing_50_and_80_delivers_one_signed_event_each(
    engine: Engine, org: Org, receiver: Receiver
) -> None:
    alert_id = watch(engine, org, receiver.url)
    now = utcnow()
    for i, nano in enumerate((300_000_000, 250_000_000, 100_000_000, 200_000_000)):
        spend(engine, org, f"r{i}", nano, at=now)
    asyncio.run(run_for(fast(engine), 0.5))
    got = receiver.wait_for(2)
    assert len(receiver.got) == 2  # nothing sent twice
    assert [r.json["threshold_pct"] for r in got] == [50, 80]
    for r in got:
        assert r.signed_with(SECRET) and not r.signed_with("another secret")
        assert r.headers["x-metering-signature"].startswith("sha256=")
        assert r.json["id"] == r.event_id and r.json["alert_id"] == alert_id
        assert r.json["type"] == "budget.threshold"
        assert r.json["budget"] == {"owner_type": "team", "owner": "search", "period": "monthly",
                                    "limit": "1"}  # fmt: skip
    assert (got[0].json["spent"], got[1].json["spent"]) == ("0.55", "0.85")
    with engine.connect() as conn:
        history = alert_history(conn, alert_id=alert_id)
    assert [(h["status"], h["attempts"], h["last_status"]) for h in history] == [
        ("delivered", 1, 200),
        ("delivered", 1, 200),
    ]


def test_slack_payload_is_one_readable_sentence(
    engine: Engine, org: Org, receiver: Receiver
) -> None:
    watch(engine, org, receiver.url, payload="slack", at="80")
    spend(engine, org, "r", 812_500_000, at=utcnow())
    asyncio.run(fast(engine).deliver_due())
    (got,) = receiver.wait_for(1)
    assert got.signed_with(SECRET)
    assert list(got.json) == ["text"]
    text = got.json["text"]
    assert text.startswith("Budget alert: team 'search' crossed 80%, spent $0.8125 of its $1 limit")
    assert "the monthly period resets at " in text and text.endswith("Z.")


def test_a_receiver_failing_twice_gets_the_event_on_the_third_try(engine: Engine, org: Org) -> None:
    receiver = Receiver(fail_first=2).start()
    try:
        alert_id = watch(engine, org, receiver.url, at="50")
        spend(engine, org, "r", 600_000_000, at=utcnow())
        started = time.monotonic()
        asyncio.run(run_for(fast(engine), 1.0))
        (got,) = receiver.wait_for(1)
    finally:
        receiver.stop()
    assert len(receiver.got) == 3
    assert {r.event_id for r in receiver.got} == {got.event_id}  # the same event each time
    assert time.monotonic() - started >= 0.05 + 0.1  # backed off: 0.05 s, then 0.1 s
    with engine.connect() as conn:
        (history,) = alert_history(conn, alert_id=alert_id)
    assert (history["status"], history["attempts"], history["last_error"]) == ("delivered", 3, None)


def test_bounded_attempts_then_failed(engine: Engine, org: Org) -> None:
    receiver = Receiver(fail_first=100).start()
    try:
        alert_id = watch(engine, org, receiver.url, at="50")
        spend(engine, org, "r", 600_000_000, at=utcnow())
        asyncio.run(run_for(fast(engine, max_attempts=3), 1.5))
    finally:
        receiver.stop()
    assert len(receiver.got) == 3
    with engine.connect() as conn:
        (history,) = alert_history(conn, alert_id=alert_id)
    assert (history["status"], history["attempts"], history["last_error"]) == (
        "failed", 3, "HTTP 500"
    )  # fmt: skip


def test_events_survive_a_restart(engine: Engine, org: Org, receiver: Receiver) -> None:
    """Claimed by a deliverer that died before it sent it, or written while none runs: a
    new deliverer (a new engine, as after a restart) delivers each, once its lease ends."""
    watch(engine, org, receiver.url)
    spend(engine, org, "r1", 600_000_000, at=utcnow())
    with engine.begin() as conn:  # claimed by a process that then died
        (lost,) = claim_due(conn, now=utcnow(), lease_seconds=0.3, limit=1)
    assert lost.event.threshold_pct == 50
    spend(engine, org, "r2", 300_000_000, at=utcnow())  # written while no deliverer runs
    restarted = make_engine(str(engine.url.render_as_string(hide_password=False)))
    try:
        asyncio.run(run_for(fast(restarted), 1.0))
    finally:
        restarted.dispose()
    got = receiver.wait_for(2)
    assert sorted(r.json["threshold_pct"] for r in got) == [50, 80]
    assert len(receiver.got) == 2


def test_two_deliverers_never_send_one_event_twice(engine: Engine, db_url: str, org: Org) -> None:
    """Two deliverers (own engines, as two processes) drain 30 events at once."""
    receiver = Receiver(delay_seconds=0.02).start()
    try:
        set_(engine, "team", org.team_id, 1, "monthly", now=utcnow())
        with engine.begin() as conn:
            for _ in range(3):
                add_alert(conn, owner_type="team", owner_id=org.team_id, url=receiver.url,
                          thresholds=",".join(str(p) for p in range(10, 101, 10)),
                          payload="json", secret=SECRET, now=utcnow())  # fmt: skip
        for i in range(10):
            spend(engine, org, f"r{i}", 100_000_000, at=utcnow())
        engines = [make_engine(db_url), make_engine(db_url)]
        try:

            async def both() -> list[int]:
                return list(await asyncio.gather(*(fast(e).deliver_due() for e in engines)))

            counts = asyncio.run(both())
        finally:
            for e in engines:
                e.dispose()
        got = receiver.wait_for(30)
    finally:
        receiver.stop()
    assert sum(counts) == 30
    assert Counter(r.event_id for r in receiver.got).most_common(1)[0][1] == 1
    assert len(receiver.got) == 30
    if engine.dialect.name == "postgresql":
        assert min(counts) > 0  # both took part: SKIP LOCKED let them share the work
    with engine.connect() as conn:
        statuses = conn.execute(select(BudgetAlertEvent.status)).scalars().all()
    assert statuses == ["delivered"] * 30 and len(got) == 30


def test_stop_lets_a_send_in_progress_finish(engine: Engine, org: Org) -> None:
    """``metering serve`` stopping mid-send marks the event, leaving nothing leased."""
    receiver = Receiver(delay_seconds=0.5).start()
    try:
        alert_id = watch(engine, org, receiver.url, at="50")
        spend(engine, org, "r", 600_000_000, at=utcnow())
        asyncio.run(run_for(fast(engine), 0.2))  # stopped while the receiver still waits
    finally:
        receiver.stop()
    with engine.connect() as conn:
        (history,) = alert_history(conn, alert_id=alert_id)
    assert (history["status"], history["attempts"]) == ("delivered", 1)
