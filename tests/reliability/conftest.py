"""Fixtures for the reliability tests: the gateway in process exactly as ``metering
serve`` builds it (``create_app`` + ``BudgetGate``), a key under key and team budgets,
and the checks every fault test ends with (one record, nothing left reserved,
budget counters equal to the records)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, func, select

from metering.config import Settings
from metering.gateway import GatewayApp, create_app
from metering.simulator import Simulator
from metering.storage.budgets import check_budget_counters, set_budget
from metering.storage.keys import create_key, utcnow
from metering.storage.models import Budget, Reservation, UsageRecord

BUDGET_NANO = 100 * 10**9  # $100: never the reason a fault test's request is refused


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    sim = Simulator().start()
    try:
        yield sim
    finally:
        sim.stop()


@dataclass
class Gateway:
    engine: Engine
    simulator: Simulator
    secret: str
    apps: list[GatewayApp] = field(default_factory=list)

    def app(self, upstream_url: str | None = None, **settings: Any) -> GatewayApp:
        """The gateway as ``metering serve`` builds it, budgets enforced."""
        config = Settings(upstream_url=upstream_url or self.simulator.url, **settings)
        app = create_app(config, self.engine, budgets=True)
        self.apps.append(app)
        return app

    def client(self, app: GatewayApp) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app),
            base_url="http://proxy",
            headers={"authorization": f"Bearer {self.secret}"},
            timeout=30,
        )

    def records(self) -> list[dict[str, Any]]:
        table = UsageRecord.__table__
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(table.select().order_by(table.c.id))]

    def assert_budgets_consistent(self) -> None:
        """Nothing reserved any more; every counter equals the records."""
        with self.engine.connect() as conn:
            held = conn.execute(select(func.count()).select_from(Reservation)).scalar_one()
            reserved = conn.execute(
                select(func.coalesce(func.sum(Budget.reserved_nano), 0))
            ).scalar_one()
            assert (held, reserved) == (0, 0)
            assert check_budget_counters(conn, now=utcnow()) == []


def new_gateway(engine: Engine, simulator: Simulator) -> Gateway:
    """A key in team "ml" of customer "acme", the key and the team under $100 budgets."""
    with engine.begin() as conn:
        created = create_key(conn, name="app", team="ml", customer="acme")
        now = utcnow()
        for owner_type, owner_id in (("key", created.info.id), ("team", created.info.team_id)):
            assert owner_id is not None
            set_budget(
                conn,
                owner_type=owner_type,
                owner_id=owner_id,
                limit_nano=BUDGET_NANO,
                period="monthly",
                now=now,
            )
    return Gateway(engine, simulator, created.secret)


@pytest.fixture
async def gateway(engine: Engine, simulator: Simulator) -> AsyncIterator[Gateway]:
    made = new_gateway(engine, simulator)
    yield made
    for app in made.apps:
        await app.shutdown()
