"""Budgets narrowed to a model pattern, on real SQLite and PostgreSQL: they apply at
admission when a candidate (model or fallback) matches, are charged only for the model
that served, and their counters, status and forecasts use the same rule.

``db`` checks ``assert_budgets_consistent`` (counters = records) after every test."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import Engine, select

from metering.core.forecast import RecentSpend
from metering.core.model_patterns import budget_covers, budget_covers_any, model_matches
from metering.errors import InvalidInput, NotFound
from metering.storage.budgets import (
    budget_status,
    check_budget_counters,
    remove_budget,
    reserve,
    set_budget,
)
from metering.storage.forecasts import recent_spend
from metering.storage.models import Budget, Reservation
from tests.helpers import Org, record_and_settle
from tests.storage.budgeting import USD, T, set_

GPT4O = ("openai/gpt-4o",)


def test_the_pattern_rule() -> None:
    assert model_matches("openai/gpt-4o*", "openai/gpt-4o-mini")
    assert not model_matches("openai/gpt-4o", "openai/gpt-4o-mini")
    assert model_matches("openai", "openai/o1")  # no '/': the provider
    assert not model_matches("openai/GPT-4o", "openai/gpt-4o")  # case-sensitive
    assert budget_covers("", "anything/at-all")  # not narrowed
    assert budget_covers_any("anthropic/*", ["openai/gpt-4o", "anthropic/claude-sonnet-4-5"])
    assert not budget_covers_any("anthropic/*", ["openai/gpt-4o"])


def ask(
    db: Engine, org: Org, rid: str, nano: int, models: tuple[str, ...]
) -> tuple[bool, list[int]]:
    with db.begin() as conn:
        result = reserve(
            conn, request_id=rid, key_id=org.key_id, team_id=org.team_id,
            customer_id=org.customer_id, amount_nano=nano, now=T, ttl_seconds=600, models=models,
        )  # fmt: skip
    return result.accepted, list(result.budget_ids)


def charge(db: Engine, org: Org, rid: str, nano: int, served: str, at: datetime = T) -> None:
    with db.begin() as conn:
        record_and_settle(conn, org, request_id=rid, cost_nano=nano, started_at=at, served=served)


def spent(db: Engine, budget_id: int) -> tuple[int, int]:
    with db.connect() as conn:
        row = conn.execute(
            select(Budget.spent_nano, Budget.reserved_nano).where(Budget.id == budget_id)
        ).one()
    return int(row[0]), int(row[1])


def test_a_model_budget_refuses_its_models_and_ignores_the_others(db: Engine, org: Org) -> None:
    narrow = set_(db, "key", org.key_id, 1, "monthly", model_pattern="openai/gpt-4o")
    accepted, _ = ask(db, org, "big-4o", 2 * USD, GPT4O)
    assert not accepted
    accepted, ids = ask(db, org, "big-mini", 2 * USD, ("openai/gpt-4o-mini",))
    assert accepted and ids == []  # the narrowed budget does not apply
    charge(db, org, "big-mini", 2 * USD, "openai/gpt-4o-mini")
    assert spent(db, narrow) == (0, 0)
    accepted, ids = ask(db, org, "small-4o", USD // 2, GPT4O)
    assert accepted and ids == [narrow]
    charge(db, org, "small-4o", USD // 4, "openai/gpt-4o")
    assert spent(db, narrow) == (USD // 4, 0)


def test_one_budget_per_owner_and_pattern(db: Engine, org: Org) -> None:
    plain = set_(db, "key", org.key_id, 10, "monthly")
    wide = set_(db, "key", org.key_id, 3, "monthly", model_pattern="openai/gpt-4o*")
    assert set_(db, "key", org.key_id, 4, "monthly", model_pattern="openai/gpt-4o*") == wide
    assert len({plain, wide}) == 2
    accepted, ids = ask(db, org, "r1", USD, ("openai/gpt-4o-mini",))
    assert accepted and sorted(ids) == sorted([plain, wide])
    charge(db, org, "r1", USD // 10, "openai/gpt-4o-mini")
    assert spent(db, plain) == spent(db, wide) == (USD // 10, 0)
    with db.connect() as conn:
        rows = {s.model_pattern: s.as_dict() for s in budget_status(conn, now=T)}
    assert rows["openai/gpt-4o*"]["model"] == "openai/gpt-4o*"
    assert rows["openai/gpt-4o*"]["limit"] == "4"
    assert rows[""]["model"] is None
    with db.begin() as conn:
        remove_budget(conn, owner_type="key", owner_id=org.key_id, owner_name="k",
                      model_pattern="openai/gpt-4o*")  # fmt: skip
    with pytest.raises(NotFound, match="for models 'openai/gpt-4o\\*'"), db.begin() as conn:
        remove_budget(conn, owner_type="key", owner_id=org.key_id, owner_name="k",
                      model_pattern="openai/gpt-4o*")  # fmt: skip
    with db.connect() as conn:
        assert [s.budget_id for s in budget_status(conn, now=T)] == [plain]


def test_a_pattern_without_provider_is_refused(db: Engine, org: Org) -> None:
    for bad in ("gpt-4o", "openai/\x00", "openai/" + "x" * 300):
        with pytest.raises(InvalidInput), db.begin() as conn:
            set_budget(conn, owner_type="key", owner_id=org.key_id, limit_nano=USD,
                       period="monthly", model_pattern=bad, now=T)  # fmt: skip
    with db.connect() as conn:
        assert budget_status(conn, now=T) == []


def test_reserved_at_admission_when_a_fallback_matches_charged_only_if_it_served(
    db: Engine, org: Org
) -> None:
    """The worst case (of the dearest candidate) is reserved in every budget that covers
    one candidate; settlement releases all of it and charges those covering the served one."""
    anthropic = set_(db, "key", org.key_id, 10, "monthly", model_pattern="anthropic/*")
    openai = set_(db, "key", org.key_id, 10, "monthly", model_pattern="openai/*")
    candidates = ("openai/gpt-4o", "anthropic/claude-sonnet-4-5")
    accepted, ids = ask(db, org, "fb", 3 * USD, candidates)
    assert accepted and sorted(ids) == sorted([anthropic, openai])
    with db.connect() as conn:
        held = conn.execute(select(Reservation.budget_id, Reservation.amount_nano)).all()
    assert sorted(held) == sorted([(anthropic, 3 * USD), (openai, 3 * USD)])
    charge(db, org, "fb", USD, "anthropic/claude-sonnet-4-5")  # the primary failed
    assert spent(db, anthropic) == (USD, 0)
    assert spent(db, openai) == (0, 0)  # released, not charged


def test_counters_status_and_forecasts_count_only_the_covered_models(db: Engine, org: Org) -> None:
    """A budget set after its records: its window's spend is its models' records; the
    invariant check, the status and the recent spend of forecasts agree."""
    served = [("openai/gpt-4o", 4), ("openai/gpt-4o-mini", 2), ("anthropic/claude-sonnet-4-5", 1)]
    for i, (model, usd) in enumerate(served):
        charge(db, org, f"r{i}", usd * USD, model, at=datetime(2026, 1, 14, 9 + i))
    narrow = set_(db, "team", org.team_id, 50, "monthly", model_pattern="openai/gpt-4o*")
    assert spent(db, narrow) == (6 * USD, 0)
    with db.connect() as conn:
        assert check_budget_counters(conn, now=T) == []
        (status,) = budget_status(conn, now=T)
        recent = recent_spend(
            conn,
            [("team", org.team_id, "", "", "openai/gpt-4o*"), ("team", org.team_id, "", "", "")],
            now=T,
        )
    assert status.spent_nano == 6 * USD
    assert recent[("team", org.team_id, "", "", "openai/gpt-4o*")] == RecentSpend(
        6 * USD, datetime(2026, 1, 14)
    )
    assert recent[("team", org.team_id, "", "", "")].amount_nano == 7 * USD
    with db.begin() as conn:  # a counter off by one is reported, with the narrowed rule
        conn.execute(Budget.__table__.update().values(spent_nano=6 * USD + 1))
        problems = check_budget_counters(conn, now=T)
        conn.execute(Budget.__table__.update().values(spent_nano=6 * USD))
    assert len(problems) == 1 and "sum to $6" in problems[0]
