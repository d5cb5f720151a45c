"""The ledger (``storage.ledger``): admit and record as plain calls, each in one
transaction, and the only writer of records, budgets and rate windows on the request path.

Every test ends with ``assert_budgets_consistent`` (the ``db`` fixture)."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select

import metering
from metering.core.interrupted import InFlightCall, LastSeen, interrupted_record
from metering.core.rate_limits import RateCharge, window_start
from metering.core.records import UsageRow
from metering.reports.common import DayWindow, load_names
from metering.reports.reconcile import check_rollups
from metering.storage import ledger
from metering.storage.budget_batch import ReserveAsk
from metering.storage.budgets import ReserveResult, rebuild_budget_counters
from metering.storage.ledger import AdmitAsk, RateAsk, RateRefused, Settlement
from metering.storage.models import Budget, CallInFlight, DailyRollup, Reservation, UsageRecord
from metering.storage.rate_limits import window_usage
from tests.helpers import Org, record
from tests.storage.budgeting import USD, T, set_

WINDOW = window_start(T)


def owners(org: Org) -> tuple[int, int | None, int | None]:
    return (org.key_id, org.team_id, org.customer_id)


def ask(org: Org, rid: str, nano: int, *, tokens: int | None = None) -> AdmitAsk:
    rate = RateAsk(org.key_id, WINDOW, None, 1_000, tokens) if tokens is not None else None
    call = InFlightCall(rid, 1, org.key_id, org.team_id, org.customer_id, "openai/gpt-4o",
                        "chat_completion", False, T, 10, 20, None)  # fmt: skip
    return AdmitAsk(ReserveAsk(rid, owners(org), nano, T, ()), rate, call)


def test_admit_counts_rates_reserves_and_keeps_calls_in_flight(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 1, "never")
    with db.begin() as conn:
        out = ledger.admit(
            conn,
            [
                ask(org, "a", USD // 2, tokens=400),
                ask(org, "b", USD, tokens=300),  # over the budget: 402, tokens given back
                ask(org, "c", 1, tokens=700),  # over the tpm limit: refused for the rate
            ],
            now=T,
            ttl_seconds=600,
        )
    a, b, c = out
    assert a.accepted and a.rate == RateCharge(org.key_id, WINDOW, 400, True)
    assert isinstance(a.decision, ReserveResult) and a.decision.budget_ids
    assert not b.accepted and b.rate is None
    assert isinstance(b.decision, ReserveResult) and b.decision.refusal is not None
    assert isinstance(c.decision, RateRefused) and c.decision.used.tokens == 700
    with db.connect() as conn:
        # a counted 400; b counted 300 and gave them back; c was never counted
        assert window_usage(conn, key_id=org.key_id, window=WINDOW).tokens == 400
        held = conn.execute(select(Reservation.request_id)).scalars().all()
        flying = conn.execute(select(CallInFlight.request_id, CallInFlight.reserved_nano)).all()
    assert held == ["a"]
    assert [tuple(f) for f in flying] == [("a", USD // 2)]


def test_record_inserts_settles_corrects_and_lands_once(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 1, "never")
    with db.begin() as conn:
        (admitted,) = ledger.admit(conn, [ask(org, "r", USD // 2, tokens=400)], now=T,
                                   ttl_seconds=600)  # fmt: skip
    row = record(request_id="r", key_id=org.key_id, team_id=org.team_id,
                 customer_id=org.customer_id, cost_nano=7_000, started_at=T)  # fmt: skip
    row = row._replace(total_tokens=150)
    how = Settlement(budgets=True, rate=admitted.rate)
    later = T + timedelta(seconds=5)
    with db.begin() as conn:
        assert ledger.record(conn, [(row, how)], now=later) == [True]
    with db.begin() as conn:  # the same record again (a retry, a replay): nothing twice
        assert ledger.record(conn, [(row, how)], now=later) == [False]
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(UsageRecord)).scalar_one() == 1
        spent, reserved = conn.execute(select(Budget.spent_nano, Budget.reserved_nano)).one()
        assert (spent, reserved) == (7_000, 0)
        assert conn.execute(select(Reservation.request_id)).first() is None
        assert conn.execute(select(CallInFlight.request_id)).first() is None
        # the window counts the actual 150 tokens instead of the estimated 400
        assert window_usage(conn, key_id=org.key_id, window=WINDOW).tokens == 150


def test_a_record_without_settlement_touches_no_budget(db: Engine, org: Org) -> None:
    set_(db, "key", org.key_id, 1, "never")
    row = record(request_id="free", key_id=org.key_id, team_id=None, customer_id=None,
                 cost_nano=5, started_at=T)  # fmt: skip
    with db.begin() as conn:
        assert ledger.record(conn, [(row, ledger.NO_SETTLEMENT)], now=T) == [True]
    with db.connect() as conn:
        # not admitted by the gate (ingest, AdmitAll): counted by a rebuild, not here
        assert conn.execute(select(Budget.spent_nano)).scalar_one() == 0
    with db.begin() as conn:  # what ``metering ingest`` does after its batches
        rebuild_budget_counters(conn, now=T)


WRITERS = {
    # name → the module that defines it (a part of the ledger)
    "write_records": "metering.storage.records",
    "add_to_rollup": "metering.storage.records",
    "BatchSettlement": "metering.storage.budget_batch",
    "reserve_many": "metering.storage.budget_batch",
    "insert_calls": "metering.storage.in_flight",
    "delete_calls": "metering.storage.in_flight",
    "add_tokens": "metering.storage.rate_limits",
    "take": "metering.storage.rate_limits",
    "lock_windows": "metering.storage.rate_limits",
}
# Outside the request path, with a reason each.
ALLOWED = {
    ("metering.reports.reprice", "add_to_rollup"),  # repricing changes records already counted
    ("metering.storage.reservations", "BatchSettlement"),  # one-record settle (tests, tools)
    ("metering.storage.reservations", "reserve_many"),  # one-record reserve (tests, tools)
}


def test_only_the_ledger_calls_the_writing_functions() -> None:
    root = Path(metering.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        module = "metering." + ".".join(path.relative_to(root).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        if module == "metering.storage.ledger" or module in WRITERS.values():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in WRITERS.values():
                for alias in node.names:
                    if (
                        WRITERS.get(alias.name) == node.module
                        and (module, alias.name) not in ALLOWED
                    ):
                        offenders.append(f"{module} imports {alias.name} from {node.module}")
    assert offenders == []


def test_a_late_real_record_replaces_its_interrupted_estimate(db: Engine, org: Org) -> None:
    """The sweep recorded the call as ``interrupted`` (its process looked dead: stalled,
    or its database was down past the threshold); then its real record arrives (its own
    commit, or its journal's replay): one record, the real one, and every sum follows."""
    set_(db, "key", org.key_id, 1, "never")
    with db.begin() as conn:
        (admitted,) = ledger.admit(conn, [ask(org, "s", USD // 2, tokens=400)], now=T,
                                   ttl_seconds=600)  # fmt: skip
    how = Settlement(budgets=True, rate=admitted.rate)
    call = ask(org, "s", USD // 2).call
    assert call is not None
    estimate = interrupted_record(call._replace(reserved_nano=None), None, now=T,
                                  seen=LastSeen("h", 1, T))  # fmt: skip
    estimate = estimate._replace(total_cost=9_000, input_cost=9_000)  # what the sweep billed
    with db.begin() as conn:  # the sweep's settlement (budgets, no rate correction)
        assert ledger.record(conn, [(estimate, Settlement(budgets=True))], now=T) == [True]
    real = record(request_id="s", key_id=org.key_id, team_id=org.team_id,
                  customer_id=org.customer_id, cost_nano=7_000, started_at=T)  # fmt: skip
    real = real._replace(total_tokens=150)
    with db.begin() as conn:
        assert ledger.record(conn, [(real, how)], now=T) == [True]
    with db.begin() as conn:  # again (a second replay): nothing changes
        assert ledger.record(conn, [(real, how)], now=T) == [False]
        # and a late estimate never replaces a real record
        assert ledger.record(conn, [(estimate, Settlement(budgets=True))], now=T) == [False]
    with db.connect() as conn:
        stored = conn.execute(select(UsageRecord.__table__)).mappings().all()
        assert [UsageRow.from_mapping(r) for r in stored] == [real]
        assert conn.execute(select(Budget.spent_nano, Budget.reserved_nano)).one() == (7_000, 0)
        r = DailyRollup
        sums = select(r.requests, r.errors, r.total_cost, r.total_tokens)
        rollup = conn.execute(sums).all()
        assert [tuple(r) for r in rollup] == [(1, 0, 7_000, 150)]
        assert window_usage(conn, key_id=org.key_id, window=WINDOW).tokens == 150
        _, problems = check_rollups(conn, DayWindow(), load_names(conn))
    assert problems == []
