"""Upstream and database faults, in process (``httpx2.ASGITransport``) with the real
aiohttp upstream client and the simulator on loopback, driven by the openai SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import openai
import pytest
from sqlalchemy import Engine

from metering.config import Settings
from metering.gateway import GatewayApp, create_app
from metering.simulator import Simulator
from metering.storage.engine import make_engine
from metering.storage.keys import create_key
from metering.storage.models import UsageRecord
from tests.gateway.conftest import free_port

pytestmark = pytest.mark.anyio


def sdk(app: GatewayApp, secret: str) -> openai.AsyncOpenAI:
    transport = httpx2.ASGITransport(app=app)
    return openai.AsyncOpenAI(
        base_url="http://proxy/v1",
        api_key=secret,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=transport, base_url="http://proxy"),
    )


def records(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(UsageRecord.__table__.select())]


@pytest.fixture
def secret(engine: Engine) -> str:
    with engine.begin() as conn:
        return create_key(conn, name="app").secret


@pytest.fixture
async def apps() -> AsyncIterator[list[GatewayApp]]:
    made: list[GatewayApp] = []
    yield made
    for app in made:
        await app.shutdown()


def make(
    apps: list[GatewayApp], engine: Engine, upstream_url: str, **settings: object
) -> GatewayApp:
    app = create_app(Settings(upstream_url=upstream_url, **settings), engine)  # type: ignore[arg-type]
    apps.append(app)
    return app


async def test_unreachable_upstream_is_502_and_recorded(
    engine: Engine, secret: str, apps: list[GatewayApp]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = sdk(make(apps, engine, closed), secret)
    with pytest.raises(openai.APIStatusError) as failed:
        await client.completions.create(model="openai/gpt-4o", prompt="x")
    assert failed.value.status_code == 502
    assert failed.value.response.json()["type"] == "upstream_error"
    [record] = records(engine)
    assert (record["status"], record["http_status"], record["total_cost"]) == (
        "upstream_error",
        502,
        0,
    )


async def test_upstream_timeout_is_504_and_recorded(
    engine: Engine, secret: str, simulator: Simulator, apps: list[GatewayApp]
) -> None:
    app = make(apps, engine, simulator.url, upstream_timeout=0.3)
    client = sdk(app, secret)
    with pytest.raises(openai.APIStatusError) as slow:
        await client.completions.create(
            model="openai/gpt-4o", prompt="x", extra_body={"sim": {"delay": 5}}
        )
    assert slow.value.status_code == 504
    assert slow.value.response.json()["type"] == "upstream_timeout"
    [record] = records(engine)
    assert (record["status"], record["http_status"]) == ("timeout", 504)


async def test_database_unavailable_fails_closed(
    simulator: Simulator, apps: list[GatewayApp]
) -> None:
    dead = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none")
    try:
        app = make(apps, dead, simulator.url)
        client = sdk(app, "sk-bf-whatever-the-database-cannot-say")
        with pytest.raises(openai.APIStatusError) as down:
            await client.completions.create(model="openai/gpt-4o", prompt="x")
        assert down.value.status_code == 503
        assert down.value.response.json()["type"] == "metering_unavailable"
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://proxy"
        ) as raw:
            health = await raw.get("/health")
        assert health.status_code == 503
        assert simulator.received == []
    finally:
        dead.dispose()


async def test_health_reports_database_ok(
    engine: Engine, simulator: Simulator, apps: list[GatewayApp]
) -> None:
    app = make(apps, engine, simulator.url)
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://proxy"
    ) as raw:
        health = await raw.get("/health")
        missing = await raw.get("/v1/nothing")
    assert health.status_code == 200
    assert health.json() == {
        "status": "ok",
        "database": "ok",
        "journal": {"pending": 0, "journaled": 0},
    }
    assert missing.status_code == 404
