"""Budgets of end users and tags, and the default end-user budget, on real SQLite and
PostgreSQL: which requests they apply to, what they are charged, the default's budgets
created on first use (once, also under concurrency), and counters = records.

``db`` checks ``assert_budgets_consistent`` (counters = records) after every test."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from metering.core.attribution import NO_ATTRIBUTION, Attribution
from metering.errors import InvalidInput
from metering.storage.budget_batch import ReserveAsk, reserve_many
from metering.storage.budget_results import ReserveResult
from metering.storage.budgets import budget_status, remove_budget, set_budget
from metering.storage.engine import make_engine
from metering.storage.forecasts import recent_spend
from metering.storage.models import Budget
from tests.helpers import Org, assert_budgets_consistent, record_and_settle
from tests.storage.budgeting import USD, T

GPT4O = ("openai/gpt-4o",)


def scope(org: Org) -> str:
    return f"customer:{org.customer_id}"


def who(org: Org, user: str | None = None, *tags: str) -> Attribution:
    if user is None:
        return Attribution(None, None, tuple(sorted(tags)))
    return Attribution(user, scope(org), tuple(sorted(tags)))


def set_scoped(db: Engine, kind: str, usd: float, **identity: str) -> int:
    with db.begin() as conn:
        return set_budget(conn, owner_type=kind, owner_id=0, limit_nano=int(usd * USD),
                          period="monthly", now=T, **identity).budget_id  # fmt: skip


def ask(db: Engine, org: Org, rid: str, nano: int, attribution: Attribution) -> ReserveResult:
    request = ReserveAsk(
        rid, (org.key_id, org.team_id, org.customer_id), nano, T, GPT4O, attribution
    )
    with db.begin() as conn:
        (result,) = reserve_many(conn, [request], now=T, ttl_seconds=600)
    assert isinstance(result, ReserveResult)
    return result


def charge(db: Engine, org: Org, rid: str, nano: int, attribution: Attribution) -> None:
    extra: dict[str, Any] = {
        "end_user": attribution.end_user,
        "end_user_scope": attribution.end_user_scope,
        "tags": ",".join(attribution.tags) or None,
    }
    with db.begin() as conn:
        record_and_settle(conn, org, request_id=rid, cost_nano=nano, started_at=T, **extra)


def counters(db: Engine, budget_id: int) -> tuple[int, int]:
    with db.connect() as conn:
        row = conn.execute(
            select(Budget.spent_nano, Budget.reserved_nano).where(Budget.id == budget_id)
        ).one()
    return int(row[0]), int(row[1])


def test_an_end_user_budget_holds_that_end_user_only(db: Engine, org: Org) -> None:
    u1 = set_scoped(db, "end_user", 1, scope=scope(org), subject="u-1")
    refused = ask(db, org, "big", 2 * USD, who(org, "u-1"))
    assert not refused.accepted and refused.refusal is not None
    assert "end user budget of end user 'u-1' of customer 'acme' would be exceeded" in (
        refused.refusal.message()
    )
    assert ask(db, org, "other", 2 * USD, who(org, "u-2")).budget_ids == ()  # another user
    assert ask(db, org, "nobody", 2 * USD, NO_ATTRIBUTION).budget_ids == ()  # no end user
    other_scope = Attribution("u-1", f"key:{org.key_id}", ())  # another scope's u-1
    assert ask(db, org, "elsewhere", 2 * USD, other_scope).budget_ids == ()
    assert ask(db, org, "fits", USD // 2, who(org, "u-1")).budget_ids == (u1,)
    charge(db, org, "fits", USD // 4, who(org, "u-1"))
    for rid, attribution in (("other", who(org, "u-2")), ("nobody", NO_ATTRIBUTION)):
        charge(db, org, rid, USD, attribution)
    charge(db, org, "elsewhere", USD, other_scope)
    assert counters(db, u1) == (USD // 4, 0)


def test_a_tag_budget_counts_every_request_carrying_the_tag(db: Engine, org: Org) -> None:
    rag = set_scoped(db, "tag", 10, subject="feature=rag")
    beta = set_scoped(db, "tag", 10, subject="beta")
    both = who(org, None, "feature=rag", "beta")
    assert sorted(ask(db, org, "r1", USD, both).budget_ids) == sorted([rag, beta])
    charge(db, org, "r1", USD // 2, both)  # one request, counted in both tags' budgets
    assert ask(db, org, "r2", USD, who(org, None, "beta")).budget_ids == (beta,)
    charge(db, org, "r2", USD // 4, who(org, None, "beta"))
    assert counters(db, rag) == (USD // 2, 0)
    assert counters(db, beta) == (USD // 2 + USD // 4, 0)
    refused = ask(db, org, "r3", 10 * USD, who(org, None, "beta"))
    assert refused.refusal is not None
    assert "tag budget of tag 'beta' would be exceeded" in refused.refusal.message()
    with db.connect() as conn:
        names = {(s.owner_type, s.owner_name) for s in budget_status(conn, now=T)}
    assert names == {("tag", "feature=rag"), ("tag", "beta")}


def test_set_after_records_counts_them_and_bad_identities_are_refused(db: Engine, org: Org) -> None:
    charge(db, org, "before", 3 * USD, who(org, "u-1", "beta"))
    u1 = set_scoped(db, "end_user", 10, scope=scope(org), subject="u-1")
    beta = set_scoped(db, "tag", 10, subject="beta")
    assert counters(db, u1) == counters(db, beta) == (3 * USD, 0)
    for kind, identity in (
        ("tag", {"subject": "a,b"}),
        ("tag", {"subject": "x\x00"}),
        ("end_user", {"scope": scope(org), "subject": ""}),
        ("end_user", {"scope": "team:1", "subject": "u"}),
        ("each_end_user", {"scope": "acme"}),
    ):
        with pytest.raises(InvalidInput):
            set_scoped(db, kind, 1, **identity)


def test_the_default_end_user_budget_is_created_on_first_use_and_holds(
    db: Engine, org: Org
) -> None:
    default = set_scoped(db, "each_end_user", 1, scope=scope(org))
    charge(db, org, "earlier", USD // 2, who(org, "u-1"))  # this month, before the default
    first = ask(db, org, "u1-a", USD // 4, who(org, "u-1"))
    assert first.accepted and len(first.budget_ids) == 1
    (u1,) = first.budget_ids
    assert u1 != default
    assert counters(db, u1) == (USD // 2, USD // 4)  # its spend so far counts
    assert ask(db, org, "u1-b", USD // 2, who(org, "u-1")).budget_ids == ()  # 0.5+0.25+0.5 > 1
    charge(db, org, "u1-a", USD // 4, who(org, "u-1"))
    second = ask(db, org, "u2-a", USD, who(org, "u-2"))  # another end user: its own $1
    assert second.accepted and second.budget_ids not in ((), (u1,))
    charge(db, org, "u2-a", USD, who(org, "u-2"))
    assert ask(db, org, "none", 5 * USD, NO_ATTRIBUTION).accepted  # no end user: no budget
    charge(db, org, "none", USD, NO_ATTRIBUTION)
    with db.connect() as conn:
        rows = {(s.owner_type, s.owner_name, s.scope_name) for s in budget_status(conn, now=T)}
        created = conn.execute(select(func.count()).where(Budget.template_id == default)).scalar()
    assert rows == {
        ("each_end_user", "each end user", "customer 'acme'"),
        ("end_user", "u-1", "customer 'acme'"),
        ("end_user", "u-2", "customer 'acme'"),
    }
    assert created == 2
    assert counters(db, default) == (0, 0)  # the default itself is never charged
    set_scoped(db, "each_end_user", 3, scope=scope(org))  # its budgets follow a change
    assert ask(db, org, "u1-c", USD, who(org, "u-1")).accepted
    charge(db, org, "u1-c", USD, who(org, "u-1"))
    with db.begin() as conn:
        remove_budget(conn, owner_type="each_end_user", owner_id=0, owner_name="each end user",
                      scope=scope(org))  # fmt: skip
    with db.connect() as conn:
        assert budget_status(conn, now=T) == []  # its budgets went with it


def test_concurrent_first_requests_of_a_new_end_user_create_one_budget(
    db_url: str, org: Org
) -> None:
    """10×K first requests of one new end user at once (each its own transaction, on
    its own connection), whose default budget fits K: one budget is created, K pass."""
    k = 3
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            set_budget(conn, owner_type="each_end_user", owner_id=0, scope=scope(org),
                       limit_nano=k * USD, period="monthly", now=T)  # fmt: skip
        barrier = threading.Barrier(10 * k)
        results: list[bool] = []
        errors: list[BaseException] = []

        def one(i: int) -> None:
            try:
                barrier.wait()
                results.append(ask(engine, org, f"r{i}", USD, who(org, "new-user")).accepted)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(10 * k)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert results.count(True) == k
        with engine.connect() as conn:
            created = conn.execute(
                select(Budget.reserved_nano).where(Budget.owner_type == "end_user")
            ).all()
        assert [tuple(r) for r in created] == [(k * USD,)]
        assert_budgets_consistent(engine, now=T)
    finally:
        engine.dispose()


def test_forecasts_read_the_tag_and_end_user_rollups(db: Engine, org: Org) -> None:
    charge(db, org, "r1", 2 * USD, who(org, "u-1", "beta", "feature=rag"))
    charge(db, org, "r2", USD, who(org, "u-2", "beta"))
    charge(db, org, "r3", USD, Attribution("u-1", f"key:{org.key_id}", ()))  # another u-1
    identities = [("tag", 0, "", "beta", ""), ("tag", 0, "", "feature=rag", ""),
                  ("end_user", 0, scope(org), "u-1", ""),
                  ("each_end_user", 0, scope(org), "", "")]  # fmt: skip
    with db.connect() as conn:
        found = recent_spend(conn, identities, now=T)
    assert {i: s.amount_nano for i, s in found.items()} == {
        identities[0]: 3 * USD, identities[1]: 2 * USD, identities[2]: 2 * USD,
    }  # fmt: skip
