"""Fixtures for the admin API: a real ``metering serve`` (the simulator upstream) with
admin tokens of every scope, of one scope and revoked, and a virtual key."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, MetaData, select

from metering.operations.tokens import create_token_op, revoke_token_op
from metering.simulator import Simulator
from metering.storage.keys import create_key
from tests.process import start_server, stop_server

SNAPSHOT_SKIP = frozenset(("serving_processes", "calls_in_flight"))  # the server's own rows


@dataclass
class Admin:
    url: str
    engine: Engine
    token: str  # every scope
    reader: str  # keys:read only
    revoked: str
    virtual_key: str
    simulator: Simulator
    process: subprocess.Popen[bytes]

    def client(self, token: str | None = None) -> httpx2.Client:
        secret = self.token if token is None else token
        headers = {"authorization": f"Bearer {secret}"} if secret else {}
        return httpx2.Client(base_url=self.url + "/admin/v1", headers=headers, timeout=30)

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (but the serving process's own), to show nothing
        changed."""
        meta = MetaData()
        meta.reflect(self.engine)
        with self.engine.connect() as conn:
            return {
                name: sorted(tuple(map(repr, r)) for r in conn.execute(select(table)))
                for name, table in meta.tables.items()
                if name not in SNAPSHOT_SKIP
            }


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    sim = Simulator().start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def admin(db_url: str, engine: Engine, simulator: Simulator) -> Iterator[Admin]:
    with engine.begin() as conn:
        token = create_token_op(conn, name="ops", scopes=(), actor="cli").secret
        reader = create_token_op(conn, name="reader", scopes=("keys:read",), actor="cli").secret
        revoked = create_token_op(conn, name="old", scopes=(), actor="cli").secret
        revoke_token_op(conn, "old", actor="cli")
        virtual_key = create_key(conn, name="app", team="ml", customer="acme").secret
    url, process = start_server(db_url, simulator.url)
    try:
        yield Admin(url, engine, token, reader, revoked, virtual_key, simulator, process)
    finally:
        stop_server(process)
