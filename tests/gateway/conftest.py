"""Fixtures for the gateway: the simulated upstream (a real aiohttp server on loopback)
and ``metering serve`` as a real process on a free port, stopped by PID."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest
from sqlalchemy import Engine, text

from metering.simulator import Simulator
from metering.storage.keys import create_key
from metering.storage.models import UsageRecord
from tests.process import free_port, start_server, stop_server

__all__ = ["Served", "free_port", "start_server", "stop_server"]


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    sim = Simulator().start()
    try:
        yield sim
    finally:
        sim.stop()


@dataclass
class Served:
    url: str
    secret: str
    engine: Engine
    simulator: Simulator
    process: subprocess.Popen[bytes]

    def client(self, secret: str | None = None, **kwargs: Any) -> openai.OpenAI:
        # No retries: a retried request would be a second upstream call and record.
        return openai.OpenAI(
            base_url=self.url + "/v1", api_key=secret or self.secret, max_retries=0, **kwargs
        )

    def async_client(self, secret: str | None = None) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.url + "/v1", api_key=secret or self.secret, max_retries=0
        )

    def anthropic_client(self, secret: str | None = None) -> anthropic.Anthropic:
        """The Anthropic SDK on Bifrost's Anthropic route; the key goes in x-api-key."""
        return anthropic.Anthropic(
            base_url=self.url + "/anthropic", api_key=secret or self.secret, max_retries=0
        )

    def records(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(UsageRecord.__table__.select().order_by(UsageRecord.__table__.c.id))
            return [dict(r._mapping) for r in rows]

    def rollup_requests(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(text("select coalesce(sum(requests), 0) from daily_rollups")).scalar()
            )


@pytest.fixture
def served(db_url: str, engine: Engine, simulator: Simulator) -> Iterator[Served]:
    with engine.begin() as conn:
        secret = create_key(conn, name="app", team="ml", customer="acme").secret
    url, process = start_server(db_url, simulator.url)
    try:
        yield Served(url, secret, engine, simulator, process)
    finally:
        stop_server(process)
