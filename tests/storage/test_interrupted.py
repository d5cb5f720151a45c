"""The sweep of dead processes' calls in flight (``ledger.record_interrupted``): each becomes
one ``interrupted`` record, exactly once whoever sweeps and however often; its
reservation is replaced by the record's cost; a live process's calls, and the sweeping
process's own, are left alone; rollups and budget counters equal the records after.

Every test ends with ``assert_budgets_consistent`` (the ``db`` fixture)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, func, select, update

from metering.core.interrupted import InFlightCall
from metering.core.records import UsageRow
from metering.reports.common import DayWindow
from metering.reports.reconcile import reconcile
from metering.storage.budgets import reserve
from metering.storage.in_flight import (
    heartbeat,
    insert_calls,
    register_process,
)
from metering.storage.keys import utcnow
from metering.storage.ledger import Swept, record_interrupted
from metering.storage.models import (
    Budget,
    CallInFlight,
    Reservation,
    ServingProcess,
    UsageRecord,
)
from metering.storage.prices import load_price_book
from metering.storage.records import write_records
from tests.helpers import Org, record
from tests.storage.budgeting import set_

STALE = 30.0
LONG_AGO = datetime(2000, 1, 1)
# gpt-4o: 1000 prompt tokens at $2.50/M + 500 output tokens at $10/M
ESTIMATE_NANO = 7_500_000


def register(db: Engine, *, dead: bool = False) -> int:
    with db.begin() as conn:
        process_id = register_process(conn, host="test-host", pid=1000, now=utcnow())
        if dead:
            conn.execute(
                update(ServingProcess)
                .where(ServingProcess.id == process_id)
                .values(heartbeat_at=LONG_AGO)
            )
    return process_id


def admit(
    db: Engine,
    org: Org,
    request_id: str,
    process_id: int,
    *,
    amount: int | None,
    key_id: int | None = None,
    model: str = "openai/gpt-4o",
    at: datetime | None = None,
) -> InFlightCall:
    """What the gate does: reserve (if a budget applies) and keep the call in flight, in
    one transaction."""
    at = at or utcnow()
    key = org.key_id if key_id is None else key_id
    with db.begin() as conn:
        reserved = None
        if amount is not None:
            result = reserve(
                conn,
                request_id=request_id,
                key_id=key,
                team_id=org.team_id,
                customer_id=org.customer_id,
                amount_nano=amount,
                now=at,
                ttl_seconds=900,
            )
            assert result.accepted
            reserved = amount if result.budget_ids else None
        call = InFlightCall(
            request_id=request_id,
            process_id=process_id,
            key_id=key,
            team_id=org.team_id,
            customer_id=org.customer_id,
            requested_model=model,
            request_type="text_completion",
            stream=False,
            started_at=at,
            prompt_tokens=1000,
            output_tokens=500,
            reserved_nano=reserved,
        )
        insert_calls(conn, [call])
    return call


def sweep(db: Engine, own_process_id: int | None, *, stale: float = STALE) -> Swept:
    with db.begin() as conn:
        book = load_price_book(conn)
        return record_interrupted(
            conn, book=book, own_process_id=own_process_id, stale_after_seconds=stale, now=utcnow()
        )


def records(conn: Connection) -> dict[str, UsageRow]:
    rows = conn.execute(select(UsageRecord.__table__)).mappings()
    return {r["request_id"]: UsageRow.from_mapping(r) for r in rows}


def in_flight(conn: Connection) -> set[str]:
    return set(conn.execute(select(CallInFlight.request_id)).scalars())


def held(conn: Connection) -> set[str]:
    return set(conn.execute(select(Reservation.request_id)).scalars())


def spent(conn: Connection, budget_id: int) -> tuple[int, int]:
    row = conn.execute(
        select(Budget.spent_nano, Budget.reserved_nano).where(Budget.id == budget_id)
    ).one()
    return int(row[0]), int(row[1])


def test_a_dead_process_calls_become_interrupted_records_once(db: Engine, org: Org) -> None:
    now = utcnow()
    key_budget = set_(db, "key", org.key_id, 100, "monthly", now=now)
    team_budget = set_(db, "team", org.team_id, 100, "monthly", now=now)
    dead, live, sweeper = register(db, dead=True), register(db), register(db)
    admit(db, org, "dead-floor", dead, amount=20_000_000)  # estimate < reserved: floor
    admit(db, org, "dead-estimate", dead, amount=1_000_000)  # estimate > reserved
    admit(db, org, "live", live, amount=3_000_000)

    swept = sweep(db, sweeper)
    assert swept == Swept(2, 2, 0, 20_000_000 + ESTIMATE_NANO)
    with db.connect() as conn:
        got = records(conn)
        assert set(got) == {"dead-floor", "dead-estimate"}
        floor, estimate = got["dead-floor"], got["dead-estimate"]
        for rec in (floor, estimate):
            assert rec.status == "interrupted"
            assert (rec.usage_estimated, rec.cost_source) == (True, "estimated")
            assert (rec.prompt_tokens, rec.completion_tokens) == (1000, 500)
            assert rec.computed_cost == ESTIMATE_NANO
        assert (floor.total_cost, floor.adjustment_cost) == (20_000_000, 12_500_000)
        assert (estimate.total_cost, estimate.adjustment_cost) == (ESTIMATE_NANO, 0)
        # the live process's call is untouched, its reservation held
        assert in_flight(conn) == {"live"} and held(conn) == {"live"}
        billed = 20_000_000 + ESTIMATE_NANO
        assert spent(conn, key_budget) == (billed, 3_000_000)
        assert spent(conn, team_budget) == (billed, 3_000_000)
        report = reconcile(conn, window=DayWindow(), now=utcnow())
    assert report.problems == []
    assert (report.interrupted_count, report.interrupted_sum) == (2, billed)
    assert {r["request_id"] for r in report.interrupted} == {"dead-floor", "dead-estimate"}
    assert report.failed(strict=True) and not report.failed(strict=False)

    # again, and from the live process: nothing more
    assert sweep(db, sweeper) == Swept(0, 0, 0, 0)
    assert sweep(db, live) == Swept(0, 0, 0, 0)
    with db.connect() as conn:
        assert len(records(conn)) == 2
        assert spent(conn, key_budget) == (billed, 3_000_000)


def test_the_sweeping_process_never_records_its_own_calls(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 100, "monthly", now=utcnow())
    stalled = register(db, dead=True)  # its own heartbeat looks stale, e.g. after a stall
    admit(db, org, "mine", stalled, amount=2_000_000)
    assert sweep(db, stalled) == Swept(0, 0, 0, 0)
    with db.connect() as conn:
        assert in_flight(conn) == {"mine"} and held(conn) == {"mine"}
    # another process sees it dead
    assert sweep(db, register(db)).recorded == 1


def test_a_heartbeat_keeps_the_calls_in_flight(db: Engine, org: Org) -> None:
    process = register(db, dead=True)
    admit(db, org, "r", process, amount=None)
    with db.begin() as conn:
        assert heartbeat(conn, process_id=process, now=utcnow())
    assert sweep(db, None).found == 0
    # a process whose row is gone is dead whatever its heartbeat was
    with db.begin() as conn:
        conn.execute(ServingProcess.__table__.delete())
        assert not heartbeat(conn, process_id=process, now=utcnow())
    assert sweep(db, None).recorded == 1


def test_unbudgeted_and_unpriced_calls_are_recorded_too(db: Engine, org: Org) -> None:
    dead = register(db, dead=True)
    admit(db, org, "plain", dead, amount=None)
    admit(db, org, "no-price", dead, amount=None, model="mistral/large-unpriced")
    assert sweep(db, None).recorded == 2
    with db.connect() as conn:
        got = records(conn)
        report = reconcile(conn, window=DayWindow(), now=utcnow())
    assert (got["plain"].total_cost, got["plain"].cost_source) == (ESTIMATE_NANO, "estimated")
    unpriced = got["no-price"]
    assert (unpriced.total_cost, unpriced.cost_source) == (0, "unpriced")
    assert unpriced.usage_estimated is True and unpriced.total_tokens == 1500
    assert report.interrupted_count == 2
    assert report.unpriced_count == 1  # listed as unpriced as well, never silently $0


def test_a_call_already_recorded_is_not_recorded_or_charged_again(db: Engine, org: Org) -> None:
    """E.g. a record replayed from a journal after its process died."""
    key_budget = set_(db, "key", org.key_id, 100, "monthly", now=utcnow())
    dead = register(db, dead=True)
    call = admit(db, org, "replayed", dead, amount=5_000_000)
    with db.begin() as conn:
        row = record(
            request_id="replayed",
            key_id=org.key_id,
            team_id=org.team_id,
            customer_id=org.customer_id,
            cost_nano=1_234,
            started_at=call.started_at,
        )
        write_records(conn, [row])
        from tests.helpers import settle

        settle(
            conn,
            request_id="replayed",
            key_id=org.key_id,
            team_id=org.team_id,
            customer_id=org.customer_id,
            actual_nano=1_234,
            started_at=call.started_at,
            now=utcnow(),
        )
    swept = sweep(db, None)
    assert (swept.found, swept.recorded, swept.already) == (1, 0, 1)
    with db.connect() as conn:
        assert records(conn)["replayed"].status == "success"
        assert in_flight(conn) == set()
        assert spent(conn, key_budget) == (1_234, 0)


def test_cost_goes_to_the_window_of_started_at(db: Engine, org: Org) -> None:
    """A call that started in yesterday's window of a daily budget is charged there: today's
    spent is unchanged, the reservation is released."""
    now = utcnow()
    yesterday = now - timedelta(days=1)
    key_budget = set_(db, "key", org.key_id, 100, "daily", now=yesterday)
    dead = register(db, dead=True)
    admit(db, org, "late", dead, amount=20_000_000, at=yesterday)
    assert sweep(db, None).recorded == 1
    with db.connect() as conn:
        assert spent(conn, key_budget) == (0, 0)  # rolled into today's window: nothing today
        assert records(conn)["late"].total_cost == 20_000_000
        assert held(conn) == set()


def test_dead_processes_are_forgotten_once_nothing_is_left_in_flight(db: Engine, org: Org) -> None:
    dead, live = register(db, dead=True), register(db)
    admit(db, org, "r", dead, amount=None)
    sweep(db, live)
    with db.connect() as conn:
        ids = set(conn.execute(select(ServingProcess.id)).scalars())
    assert ids == {live}


def test_two_sweepers_at_once_record_each_call_once(db: Engine, org: Org) -> None:
    key_budget = set_(db, "key", org.key_id, 1000, "monthly", now=utcnow())
    set_(db, "team", org.team_id, 1000, "monthly", now=utcnow())
    dead = register(db, dead=True)
    calls = 300
    with db.begin() as conn:
        at = utcnow()
        for i in range(calls):
            reserve(
                conn,
                request_id=f"c{i}",
                key_id=org.key_id if i % 2 else org.other_key_id,
                team_id=org.team_id,
                customer_id=org.customer_id,
                amount_nano=10_000_000,
                now=at,
                ttl_seconds=900,
            )
        insert_calls(
            conn,
            [
                InFlightCall(
                    request_id=f"c{i}",
                    process_id=dead,
                    key_id=org.key_id if i % 2 else org.other_key_id,
                    team_id=org.team_id,
                    customer_id=org.customer_id,
                    requested_model="openai/gpt-4o",
                    request_type="text_completion",
                    stream=bool(i % 3),
                    started_at=at,
                    prompt_tokens=1000,
                    output_tokens=500,
                    reserved_nano=10_000_000,
                )
                for i in range(calls)
            ],
        )
    sweepers = [register(db), register(db)]
    start = threading.Barrier(len(sweepers))
    results: list[Swept] = []
    errors: list[BaseException] = []

    def run(own: int) -> None:
        try:
            start.wait()
            while True:  # small batches, so that the two interleave
                with db.begin() as conn:
                    swept = record_interrupted(
                        conn,
                        book=load_price_book(conn),
                        own_process_id=own,
                        stale_after_seconds=STALE,
                        now=utcnow(),
                        limit=25,
                    )
                results.append(swept)
                if swept.found == 0:
                    return
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(own,)) for own in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sum(r.recorded for r in results) == calls
    with db.connect() as conn:
        count = conn.execute(select(func.count()).select_from(UsageRecord)).scalar_one()
        assert count == calls
        assert in_flight(conn) == set() and held(conn) == set()
        key_spent, key_reserved = spent(conn, key_budget)
        assert (key_spent, key_reserved) == (calls // 2 * 10_000_000, 0)
        assert reconcile(conn, window=DayWindow(), now=utcnow()).problems == []
