"""Fixtures for the gateway: the simulated upstream (a real aiohttp server on loopback)
and ``metering serve`` as a real process on a free port, stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import pytest
from sqlalchemy import Engine, text

from metering.simulator import Simulator
from metering.storage.keys import create_key
from metering.storage.models import UsageRecord

START_DEADLINE_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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

    def records(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(UsageRecord.__table__.select().order_by(UsageRecord.__table__.c.id))
            return [dict(r._mapping) for r in rows]

    def rollup_requests(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(text("select coalesce(sum(requests), 0) from daily_rollups")).scalar()
            )


def start_server(db_url: str, upstream: str, **env: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    environ = {
        **os.environ,
        "METERING_DATABASE_URL": db_url,
        "METERING_UPSTREAM_API_KEY": "upstream-secret",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "metering", "serve", "--port", str(port), "--upstream", upstream],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"metering serve exited: {process.stderr.read().decode()}")  # type: ignore[union-attr]
        try:
            if httpx2.get(url + "/health", timeout=1).status_code == 200:
                return url, process
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_server(process)
            raise RuntimeError("metering serve did not start")
        time.sleep(0.05)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    if process.stderr is not None:
        process.stderr.close()


@pytest.fixture
def served(db_url: str, engine: Engine, simulator: Simulator) -> Iterator[Served]:
    with engine.begin() as conn:
        secret = create_key(conn, name="app", team="ml", customer="acme").secret
    url, process = start_server(db_url, simulator.url)
    try:
        yield Served(url, secret, engine, simulator, process)
    finally:
        stop_server(process)
