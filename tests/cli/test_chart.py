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
        records = generate_month(conn, seed_org(conn), n=60)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["--database-url", db_url, "chart", "--month", "2026-11", "--by", "provider"]
    )
    assert result.exit_code == 0, result.output
    wrote, *rest = result.output.splitlines()
    assert wrote.startswith("wrote reports/spend-2026-11.png (")
    assert wrote.endswith(" series, 30 days)")
    unpriced = sum(r.cost_source == "unpriced" and r.started_at.month == 11 for r in records)
    # Their $0 is not free: the chart (in its title) and the command say how many.
    assert unpriced and rest == [
        f"! {unpriced} request(s) without a price are counted as $0 (metering reconcile "
        "lists them; metering reprice bills them once a price exists)"
    ]
    assert (tmp_path / "reports/spend-2026-11.png").read_bytes()[:4] == b"\x89PNG"


def test_chart_rejects_bad_month(db_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["--database-url", db_url, "chart", "--month", "2026/11", "--out", str(tmp_path / "c.png")],
    )
    assert result.exit_code == 1
    assert "YYYY-MM" in result.output


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("/sys/c.png", "Error: cannot write /sys/c.png: "),
        ("{tmp}/missing/c.png", "Error: cannot write {tmp}/missing/c.png: folder {tmp}/missing"),
    ],
)
def test_chart_unwritable_out_is_one_line(
    db_url: str, tmp_path: Path, out: str, message: str
) -> None:
    path = out.format(tmp=tmp_path)
    result = CliRunner().invoke(
        main, ["--database-url", db_url, "chart", "--month", "2026-11", "--out", path]
    )
    assert result.exit_code == 1
    assert result.output.startswith(message.format(tmp=tmp_path))
    assert result.output.count("\n") == 1
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("month", ["2026-1", "2026-02-30"])
def test_chart_invalid_month_is_one_line(db_url: str, tmp_path: Path, month: str) -> None:
    result = CliRunner().invoke(
        main,
        ["--database-url", db_url, "chart", "--month", month, "--out", str(tmp_path / "c.png")],
    )
    assert result.exit_code == 1
    assert result.output == f"Error: month {month!r} must be written YYYY-MM (e.g. 2026-11)\n"
