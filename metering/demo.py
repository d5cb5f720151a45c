"""``metering demo``: the whole pipeline on one machine, in a few seconds.

Starts the simulated upstream (``metering.simulator``) and the real proxy
(``metering serve`` as a child process) on free loopback ports, with a
temporary SQLite database unless one is given; creates two keys; sends a few
dozen requests over real HTTP (streamed and not, several providers, a
fallback, a gateway cache hit); returns the spend by provider/model (as
``metering spend --by provider,model``) and writes the month's requests CSV (as
``metering export --detail requests``). The child process is always stopped.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import Engine, func, select

from metering.core.money import format_usd
from metering.errors import Conflict, MeteringError
from metering.reports.export import write_export
from metering.reports.spend import spend_groups, spend_rows
from metering.simulator import Simulator
from metering.storage.database import open_database
from metering.storage.keys import create_key
from metering.storage.models import UsageRecord

START_TIMEOUT_SECONDS = 30

# (model, body extras, streamed) — each sent by both demo keys.
TRAFFIC: list[tuple[str, dict[str, Any], bool]] = [
    ("openai/gpt-4o", {"prompt": "Summarise our metering design in one line."}, False),
    ("openai/gpt-4o", {"prompt": ["First prompt", "Second prompt"], "n": 2}, False),
    ("openai/gpt-4o", {"prompt": "Stream a short answer.", "max_tokens": 12}, True),
    ("openai/gpt-4o-mini", {"prompt": "A cheap question."}, False),
    ("openai/o3-mini", {"prompt": "Think before answering: 17 x 23?"}, False),
    ("openai/o3-mini", {"prompt": "Think, and stream it."}, True),
    ("anthropic/claude-sonnet-4-5", {"prompt": "Long cached system prompt + question"}, False),
    ("anthropic/claude-sonnet-4-5", {"prompt": "Stream from Claude."}, True),
    ("perplexity/sonar", {"prompt": "What changed in LLM pricing this year?"}, False),
    ("perplexity/sonar-deep-research", {"prompt": "Deep research: gateway costs."}, False),
    ("gemini/gemini-2.5-pro", {"prompt": "Hello Gemini."}, False),
    (
        "openai/gpt-4o",
        {
            "prompt": "The primary provider is down: a fallback serves this one.",
            "fallbacks": ["anthropic/claude-sonnet-4-5"],
            "sim": {"fail_primary": True},
        },
        False,
    ),
    (
        "openai/gpt-4o",
        {"prompt": "Summarise our metering design in one line.", "sim": {"cache": "direct"}},
        False,
    ),
    ("openai/gpt-4o", {"prompt": "The provider fails this one.", "sim": {"status": 503}}, False),
]


@dataclass
class DemoResult:
    requests_sent: int
    spend: list[dict[str, Any]]  # one row per provider/model, amounts as decimal strings
    total_cost: str
    csv_path: Path
    database_url: str
    proxy_pid: int  # stopped and reaped before run_demo returns


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_proxy(database_url: str, upstream: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "METERING_DATABASE_URL": database_url}
    env.pop("METERING_UPSTREAM_API_KEY", None)
    command = [sys.executable, "-m", "metering", "serve", "--port", str(port)]
    command += ["--upstream", upstream, "--log-level", "warning"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop_proxy(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stderr is not None:
        process.stderr.close()


async def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode() if process.stderr else ""
                raise MeteringError(f"the demo proxy exited early: {err.strip()}")
            try:
                async with session.get(url + "/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise MeteringError("the demo proxy did not start within 30 s")
            await asyncio.sleep(0.05)


async def _send_traffic(url: str, secrets: list[str]) -> int:
    async with aiohttp.ClientSession() as session:

        async def one(secret: str, model: str, extra: dict[str, Any], stream: bool) -> None:
            path = "/v1/chat/completions" if "messages" in extra else "/v1/completions"
            body = {"model": model, **extra, "stream": stream}
            headers = {"authorization": f"Bearer {secret}"}
            async with session.post(url + path, json=body, headers=headers) as response:
                await response.read()

        jobs = [one(s, m, e, st) for s in secrets for (m, e, st) in TRAFFIC]
        chat = {"messages": [{"role": "user", "content": "Hi from the chat endpoint."}]}
        jobs += [one(s, "openai/gpt-4o", chat, False) for s in secrets]
        await asyncio.gather(*jobs)
        return len(jobs)


def spend_by_model(engine: Engine) -> list[dict[str, Any]]:
    """The demo's spend per provider/model, as `metering spend --by provider,model` shows it."""
    with engine.connect() as conn:
        return spend_rows(spend_groups(conn, by=("provider", "model")))


def write_request_csvs(engine: Engine, out: Path, months: list[str]) -> list[Path]:
    """The requests CSV of `metering export --detail requests` for the month(s) the demo ran
    in (two only if it ran across a month boundary; the second gets the month in its name)."""
    paths = []
    with engine.connect() as conn:
        for i, month in enumerate(months):
            path = out if i == 0 else out.with_name(f"{out.stem}-{month}{out.suffix}")
            write_export(conn, month=month, detail="requests", out=path)
            paths.append(path)
    return paths


def _demo_key(engine: Engine, name: str, *, team: str) -> str:
    """A fresh key; in a database that already has one of that name, a suffixed name."""
    for attempt in range(100):
        try:
            with engine.begin() as conn:
                label = name if attempt == 0 else f"{name}-{attempt + 1}"
                return create_key(conn, name=label, team=team, customer="acme").secret
        except Conflict:
            continue
    raise Conflict(f"too many {name} keys in this database")


def run_demo(
    *, database_url: str | None, out: Path, say: Callable[[str], None] = lambda _: None
) -> DemoResult:
    with tempfile.TemporaryDirectory(prefix="metering-demo-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'demo.db'}"
        engine = open_database(url)
        try:
            secrets = [
                _demo_key(engine, "demo-web", team="web"),
                _demo_key(engine, "demo-research", team="research"),
            ]
            with Simulator() as sim:
                say(f"simulated upstream on {sim.url}")
                port = _free_port()
                proxy = _start_proxy(url, sim.url, port)
                try:
                    proxy_url = f"http://127.0.0.1:{port}"
                    asyncio.run(_wait_ready(proxy_url, proxy))
                    say(f"metering proxy on {proxy_url} (database {url})")
                    first_month = datetime.now(UTC).strftime("%Y-%m")
                    sent = asyncio.run(_send_traffic(proxy_url, secrets))
                    months = sorted({first_month, datetime.now(UTC).strftime("%Y-%m")})
                finally:
                    _stop_proxy(proxy)
            say(f"sent {sent} requests through the proxy")
            spend = spend_by_model(engine)
            write_request_csvs(engine, out, months)
            with engine.connect() as conn:
                total = conn.execute(select(func.sum(UsageRecord.total_cost))).scalar() or 0
            return DemoResult(sent, spend, format_usd(int(total)), out, url, proxy.pid)
        finally:
            engine.dispose()
