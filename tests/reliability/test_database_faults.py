"""The metering database unavailable at request time: 503 ``metering_unavailable``,
nothing sent upstream (fail closed: no unmetered traffic), ``/health`` says so, and
the same app serves and meters again once the database is back (no restart).

PostgreSQL: a throwaway database of the test server stops accepting connections
(``ALLOW_CONNECTIONS false`` and its sessions terminated) after the gateway has
warmed its pool and cached the key. SQLite: the database's directory is moved away
before the first request (a missing volume) and moved back."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from metering.gateway import GatewayApp
from metering.simulator import Simulator
from metering.storage.engine import make_engine
from metering.storage.keys import create_key
from tests.reliability.conftest import Gateway

pytestmark = pytest.mark.anyio

RECOVERY_ATTEMPTS = 50
BODY = {"model": "openai/gpt-4o", "prompt": "x", "max_tokens": 8}


async def assert_fails_closed(gateway: Gateway, app: GatewayApp, *, stream: bool) -> None:
    async with gateway.client(app) as client:
        down = await client.post("/v1/completions", json={**BODY, "stream": stream})
        health = await client.get("/health")
    assert down.status_code == 503, down.text
    error = down.json()
    assert (error["type"], error["status_code"]) == ("metering_unavailable", 503)
    assert "not forwarded" in error["error"]["message"]
    assert health.status_code == 503 and health.json()["type"] == "metering_unavailable"
    assert gateway.simulator.received == []


async def assert_recovers(gateway: Gateway, app: GatewayApp) -> None:
    """Bounded polling: the first requests after the outage may still find a dead pooled
    connection; within a few attempts one is served and recorded."""
    async with gateway.client(app) as client:
        for _ in range(RECOVERY_ATTEMPTS):
            response = await client.post("/v1/completions", json=BODY)
            if response.status_code == 200:
                break
            assert response.json()["type"] == "metering_unavailable"
        assert response.status_code == 200
        assert (await client.get("/health")).status_code == 200
    [record] = [r for r in gateway.records() if r["status"] == "success"]
    assert record["request_id"] == response.headers["x-metering-request-id"]
    assert record["cost_source"] == "computed" and record["total_cost"] > 0  # priced
    assert len(gateway.simulator.received) == 1


@pytest.fixture
def throwaway_pg(pg_url: str | None) -> Iterator[tuple[str, str]]:
    """A migrated PostgreSQL database of its own (url, name), dropped at the end."""
    if pg_url is None:
        pytest.skip("no PostgreSQL")
    name = f"metering_fault_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    try:
        from metering.storage.database import open_database

        open_database(url).dispose()
        yield url, name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def set_reachable(pg_url: str, name: str, *, reachable: bool) -> None:
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(reachable).lower()}')
        )
        if not reachable:
            conn.execute(
                text("select pg_terminate_backend(pid) from pg_stat_activity where datname = :n"),
                {"n": name},
            )
    admin.dispose()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_postgresql_down_at_request_time(
    throwaway_pg: tuple[str, str], pg_url: str, simulator: Simulator, stream: bool
) -> None:
    url, name = throwaway_pg
    engine = make_engine(url)
    with engine.begin() as conn:
        secret = create_key(conn, name="app").secret
    gateway = Gateway(engine, simulator, secret)
    try:
        app = gateway.app(cache_ttl=60)  # the key stays cached through the outage
        async with gateway.client(app) as client:
            warm = await client.post("/v1/completions", json=BODY)
        assert warm.status_code == 200
        simulator.received.clear()
        set_reachable(pg_url, name, reachable=False)
        await assert_fails_closed(gateway, app, stream=stream)
        set_reachable(pg_url, name, reachable=True)
        with engine.begin() as conn:
            conn.execute(text("delete from usage_records"))
            conn.execute(text("delete from daily_rollups"))
        await assert_recovers(gateway, app)
        gateway.assert_budgets_consistent()
    finally:
        for made in gateway.apps:
            await made.shutdown()
        engine.dispose()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_sqlite_directory_gone_at_request_time(
    sqlite_template: Path, tmp_path: Path, simulator: Simulator, stream: bool
) -> None:
    home = tmp_path / "volume"
    home.mkdir()
    shutil.copy(sqlite_template, home / "metering.db")
    engine = make_engine(f"sqlite:///{home / 'metering.db'}")
    with engine.begin() as conn:
        secret = create_key(conn, name="app").secret
    engine.dispose()  # nothing connected when the request comes
    gateway = Gateway(engine, simulator, secret)
    try:
        app = gateway.app()
        home.rename(tmp_path / "unmounted")
        try:
            await assert_fails_closed(gateway, app, stream=stream)
        finally:
            (tmp_path / "unmounted").rename(home)
        await assert_recovers(gateway, app)
        gateway.assert_budgets_consistent()
    finally:
        for made in gateway.apps:
            await made.shutdown()
        engine.dispose()


# A database that still answers reads but refuses writes must fail closed too: every
# request (budgeted key or not) takes a write transaction before anything goes upstream.


async def assert_refused_before_upstream(gateway: Gateway, *, stream: bool) -> None:
    app = gateway.app()
    async with gateway.client(app) as client:
        response = await client.post("/v1/completions", json={**BODY, "stream": stream})
    assert response.status_code == 503, response.text
    assert response.json()["type"] == "metering_unavailable"
    assert gateway.simulator.received == []  # nothing unmetered reached the upstream
    assert gateway.records() == []


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_sqlite_read_only_fails_closed(
    sqlite_template: Path, tmp_path: Path, simulator: Simulator, stream: bool
) -> None:
    path = tmp_path / "metering.db"
    shutil.copy(sqlite_template, path)
    writer = make_engine(f"sqlite:///{path}")
    with writer.begin() as conn:
        secret = create_key(conn, name="app").secret  # no budget, no rate limit
    writer.dispose()
    read_only = make_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    with read_only.connect() as conn:  # it does read: the key is there
        assert conn.execute(text("select count(*) from virtual_keys")).scalar_one() == 1
    gateway = Gateway(read_only, simulator, secret)
    try:
        await assert_refused_before_upstream(gateway, stream=stream)
    finally:
        for made in gateway.apps:
            await made.shutdown()
        read_only.dispose()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_postgresql_read_only_fails_closed(
    throwaway_pg: tuple[str, str], pg_url: str, simulator: Simulator, stream: bool
) -> None:
    url, name = throwaway_pg
    engine = make_engine(url)
    with engine.begin() as conn:
        secret = create_key(conn, name="app").secret  # no budget, no rate limit
    engine.dispose()
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
    admin.dispose()
    engine = make_engine(url)
    gateway = Gateway(engine, simulator, secret)
    try:
        await assert_refused_before_upstream(gateway, stream=stream)
    finally:
        for made in gateway.apps:
            await made.shutdown()
        engine.dispose()
