from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from metering.cli import main
from tests.reports.factory import generate_month, seed_org


def test_chart_command_writes_png(
    db_url: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with engine.begin() as conn:
        generate_month(conn, seed_org(conn), n=60)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["--database-url", db_url, "chart", "--month", "2026-11", "--by", "provider"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("wrote reports/spend-2026-11.png (")
    assert result.output.endswith(" series, 30 days)\n")
    assert (tmp_path / "reports/spend-2026-11.png").read_bytes()[:4] == b"\x89PNG"


def test_chart_rejects_bad_month(db_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["--database-url", db_url, "chart", "--month", "2026/11", "--out", str(tmp_path / "c.png")],
    )
    assert result.exit_code == 1
    assert "YYYY-MM" in result.output
