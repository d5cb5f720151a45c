"""Secrets and SQL injection, after a full run through the real process and the CLI.

Keys with injection-shaped names (and teams, customers, models) are created with the
CLI; the server takes traffic (answers, a stream, an upstream error, unknown keys,
a refused model), the month is exported; then the server's log, the CSV, every CLI
output after the one that showed the secret, the upstream's view and every text
column of every table are searched for each virtual key's secret and for the
upstream API key: none is found. Keys are stored as their sha256 (and a display
prefix). The tables are all still there and the names round-trip exactly."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import Engine, inspect, select

from metering.simulator import Simulator
from metering.storage.keys import utcnow
from metering.storage.models import Base, UsageRecord, VirtualKey
from tests.process import start_server, stop_server

pytestmark = pytest.mark.slow

HOSTILE_KEY = "'; DROP TABLE usage_records; --"
HOSTILE_TEAM = 'O\'Brien "quoted" team; DELETE FROM teams --'
HOSTILE_CUSTOMER = "クライアント ✓ %_\\ customer"
HOSTILE_MODEL = "openai/'; DROP TABLE virtual_keys; --"


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "METERING_DATABASE_URL": db_url}
    result = subprocess.run(
        [sys.executable, "-m", "metering", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def text_values(engine: Engine) -> list[str]:
    """Every non-null text value of every table."""
    values = []
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(table.select()):
                values.extend(str(v) for v in row if isinstance(v, str))
    return values


def test_no_secret_anywhere_and_names_round_trip(
    db_url: str, engine: Engine, simulator: Simulator, tmp_path: Path
) -> None:
    upstream_key = f"sk-upstream-{uuid.uuid4().hex}"
    created = json.loads(
        cli(
            db_url, "keys", "create", HOSTILE_KEY, "--team", HOSTILE_TEAM,
            "--customer", HOSTILE_CUSTOMER, "--budget", "50", "--period", "monthly",
            "--format", "json",
        ).stdout
    )  # fmt: skip
    plain = json.loads(cli(db_url, "keys", "create", "plain", "--format", "json").stdout)
    secrets = [created["key"], plain["key"]]
    assert all(s.startswith("sk-bf-") for s in secrets)

    log = tmp_path / "serve.log"
    url, process = start_server(
        db_url, simulator.url, log_path=log, METERING_UPSTREAM_API_KEY=upstream_key
    )
    try:
        with httpx2.Client(base_url=url, timeout=30) as client:

            def post(secret: str, **body: object) -> httpx2.Response:
                payload = {"model": "openai/gpt-4o", "prompt": "x", "max_tokens": 8, **body}
                headers = {"authorization": f"Bearer {secret}"}
                return client.post("/v1/completions", json=payload, headers=headers)

            assert post(secrets[0]).status_code == 200
            assert post(secrets[0], stream=True).status_code == 200
            assert post(secrets[0], sim={"status": 503}).status_code == 503
            assert post(secrets[0], model=HOSTILE_MODEL).status_code == 403  # unpriced
            assert post(secrets[1], model=HOSTILE_MODEL).status_code == 200
            # A near-miss of a real secret, and one with a quote in it: both unknown.
            assert post(secrets[0][:-1] + "x").status_code == 401
            assert post(secrets[1] + "'--").status_code == 401
            budget = client.get("/v1/budget", headers={"x-bf-vk": secrets[0]})
            assert budget.status_code == 200 and budget.json()["key"] == HOSTILE_KEY
    finally:
        stop_server(process)

    month = utcnow().strftime("%Y-%m")
    outputs = [
        cli(db_url, "export", "--month", month, "--detail", "requests", "--out",
            str(tmp_path / "requests.csv")).stdout,
        cli(db_url, "export", "--month", month, "--out", str(tmp_path / "summary.csv")).stdout,
        cli(db_url, "keys", "list", "--format", "json").stdout,
        cli(db_url, "keys", "show", HOSTILE_KEY, "--format", "json").stdout,
        cli(db_url, "budgets", "list", "--format", "json").stdout,
        cli(db_url, "spend", "--by", "key,team,customer,model", "--format", "json").stdout,
    ]  # fmt: skip
    exported = (tmp_path / "requests.csv").read_text() + (tmp_path / "summary.csv").read_text()
    upstream_view = json.dumps(simulator.received)
    haystacks = {
        "server log": log.read_text(errors="replace"),
        "CSV": exported,
        "CLI output": "\n".join(outputs),
        "database": "\n".join(text_values(engine)),
    }
    for where, haystack in haystacks.items():
        for secret in [*secrets, upstream_key]:
            assert secret not in haystack, f"a secret is in the {where}"
            assert secret[6:] not in haystack, f"a secret's body is in the {where}"
    for secret in secrets:
        assert secret not in upstream_view  # the virtual key never goes upstream
    assert all(
        r["headers"]["Authorization"] == f"Bearer {upstream_key}" for r in simulator.received
    )

    with engine.connect() as conn:
        stored = {row.name: row for row in conn.execute(select(VirtualKey))}
        models = set(conn.execute(select(UsageRecord.requested_model)).scalars())
    assert set(stored) == {HOSTILE_KEY, "plain"}
    for name, secret in ((HOSTILE_KEY, secrets[0]), ("plain", secrets[1])):
        assert stored[name].key_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert len(stored[name].key_prefix) < len(secret) // 2
    assert HOSTILE_MODEL in models
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    listed = json.loads(outputs[2])
    assert {k["name"] for k in listed} == {HOSTILE_KEY, "plain"}
    assert {k["team"] for k in listed} == {HOSTILE_TEAM, None}
    assert {k["customer"] for k in listed} == {HOSTILE_CUSTOMER, None}
    assert HOSTILE_KEY in exported and HOSTILE_TEAM.replace('"', '""') in exported
