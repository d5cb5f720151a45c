"""Helpers of the budget tests: set a budget, reserve, record and settle, each in a
transaction of its own."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine

from metering.storage.budgets import reserve, set_budget
from tests.helpers import Org, record_and_settle

USD = 10**9
T = datetime(2026, 1, 15, 12)


def set_(db: Engine, owner_type: str, owner_id: int, usd: int, period: str, **kw: object) -> int:
    """Set the budget; its id."""
    with db.begin() as conn:
        return set_budget(
            conn,
            owner_type=owner_type,
            owner_id=owner_id,
            limit_nano=usd * USD,
            period=period,
            now=kw.pop("now", T),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        ).budget_id


def try_reserve(
    db: Engine, org: Org, rid: str, nano: int, *, now: datetime = T, ttl: int = 600
) -> bool:
    with db.begin() as conn:
        result = reserve(
            conn,
            request_id=rid,
            key_id=org.key_id,
            team_id=org.team_id,
            customer_id=org.customer_id,
            amount_nano=nano,
            now=now,
            ttl_seconds=ttl,
        )
    return result.accepted


def settle_(db: Engine, org: Org, rid: str, nano: int, *, at: datetime = T) -> None:
    with db.begin() as conn:
        record_and_settle(conn, org, request_id=rid, cost_nano=nano, started_at=at)
