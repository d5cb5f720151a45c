"""``metering demo`` end to end: real processes, a spend table, a CSV, nothing left behind."""

from __future__ import annotations

import csv
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from metering.cli import main
from metering.demo import run_demo

pytestmark = pytest.mark.slow


def test_demo_command_prints_spend_as_decimal_strings(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "demo.csv"
    result = CliRunner().invoke(main, ["demo", "--out", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    spend = json.loads(result.stdout)
    assert {"openai", "anthropic", "perplexity", "gemini"} <= {r["provider"] for r in spend}
    assert all(isinstance(row["total_cost"], str) for row in spend)
    assert {"input_cost", "cache_read_cost", "reasoning_cost", "search_cost"} <= set(spend[0])
    assert out.exists()


def test_demo_table_has_a_total_row(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "demo.csv")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["provider", "model", "requests", "errors"]
    assert lines[-1].split()[0] == "TOTAL"


def test_demo_records_every_shape_and_stops_the_proxy(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    out = tmp_path / "demo.csv"
    result = run_demo(database_url=f"sqlite:///{db}", out=out)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == result.requests_sent == sum(r["requests"] for r in result.spend) >= 24
    assert {r["stream"] for r in rows} == {"true", "false"}
    csv_total = sum(Decimal(r["total_cost"]) for r in rows)
    assert csv_total == Decimal(result.total_cost)  # to the last digit
    assert any(r["cache_hit_type"] == "direct" for r in rows)
    assert any(r["requested_model"] != f"{r['provider']}/{r['model']}" for r in rows)  # fallback
    assert any(r["status"] == "upstream_error" for r in rows)
    assert any(int(r["reasoning_tokens"]) > 0 for r in rows)
    assert any(int(r["search_queries"]) > 0 for r in rows)
    assert any(r["cost_source"] == "reported" for r in rows)
    with pytest.raises(ProcessLookupError):
        os.kill(result.proxy_pid, 0)  # the proxy process is gone
