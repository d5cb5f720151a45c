from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from metering.core.money import format_usd, parse_usd_to_nano
from metering.errors import InvalidInput
from metering.reports import export as export_module
from metering.reports import request_csv
from metering.reports.common import AttributionFilter, parse_month
from metering.reports.export import (
    REQUEST_COLUMNS,
    SUMMARY_COLUMNS,
    count_rows,
    default_path,
    write_export,
)
from metering.reports.spend import SpendFilter, spend_groups, spend_totals
from metering.storage.models import COST_COLUMNS, TOKEN_COLUMNS
from tests.reports.factory import Org

GROUP = ("key", "team", "customer", "provider", "model")


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _nano(text: str) -> int:
    return parse_usd_to_nano(text, allow_negative=True)


def test_summary_totals_equal_spend_to_the_nano_dollar(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]], tmp_path: Path
) -> None:
    out = tmp_path / "costs.csv"
    with engine.connect() as conn:
        result = write_export(conn, month="2026-11", out=out)
        spend = spend_totals(
            spend_groups(conn, by=("key",), filters=SpendFilter(window=parse_month("2026-11")))
        )
    rows = _read(out)
    assert list(rows[0]) == list(SUMMARY_COLUMNS)
    assert result.rows == len(rows)
    for column in COST_COLUMNS:
        assert sum(_nano(r[column]) for r in rows) == spend[column], column
        assert result.totals[column] == spend[column]
    assert sum(int(r["requests"]) for r in rows) == spend["requests"]
    assert sum(int(r["errors"]) for r in rows) == spend["errors"]
    assert {r["month"] for r in rows} == {"2026-11"}
    # one row per key × team × customer × provider × model
    assert len({tuple(r[g] for g in GROUP) for r in rows}) == len(rows)


def test_summary_and_requests_agree(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]], tmp_path: Path
) -> None:
    _, records = month_data
    with engine.connect() as conn:
        write_export(conn, month="2026-11", out=tmp_path / "s.csv")
        detail = write_export(conn, month="2026-11", detail="requests", out=tmp_path / "r.csv")
    summary = _read(tmp_path / "s.csv")
    requests = _read(tmp_path / "r.csv")
    assert list(requests[0]) == list(REQUEST_COLUMNS)
    november = {r.request_id for r in records if r.started_at.month == 11}
    assert {r["request_id"] for r in requests} == november
    assert detail.rows == len(november)

    grouped: dict[tuple[str, ...], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in requests:
        sums = grouped[tuple(r[g] for g in GROUP)]
        sums["requests"] += 1
        sums["errors"] += r["status"] != "success"
        for c in TOKEN_COLUMNS:
            sums[c] += int(r[c])
        for c in COST_COLUMNS:
            sums[c] += _nano(r[c])
    assert len(grouped) == len(summary)
    for s in summary:
        expected = grouped[tuple(s[g] for g in GROUP)]
        for c in ("requests", "errors", *TOKEN_COLUMNS):
            assert int(s[c]) == expected[c], c
        for c in COST_COLUMNS:
            assert _nano(s[c]) == expected[c], c


def test_requests_csv_columns(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]], tmp_path: Path
) -> None:
    _, records = month_data
    with engine.connect() as conn:
        write_export(conn, month="2026-11", detail="requests", out=tmp_path / "r.csv")
    rows = {r["request_id"]: r for r in _read(tmp_path / "r.csv")}
    for record in records:
        if record.request_id not in rows:
            continue
        row = rows[record.request_id]
        assert row["started_at"] == record.started_at.isoformat(timespec="microseconds") + "Z"
        assert row["total_cost"] == format_usd(record.total_cost)
        reported = record.reported_cost
        assert row["reported_cost"] == ("" if reported is None else format_usd(reported))
        assert row["cost_source"] == record.cost_source
        assert row["team"] in {"search", "ml", ""}
        # attribution; a client-chosen "=cmd" end user neutralised (formula injection)
        who = record.end_user or ""
        assert row["end_user"] == ("'" + who if who.startswith("=") else who)
        assert row["tags"] == (record.tags or "")
    assert any(r["end_user"] == "'=cmd" for r in rows.values())
    assert any("," in r["tags"] for r in rows.values())


def test_export_streams_in_chunks_with_progress(
    engine: Engine,
    month_data: tuple[Org, list[dict[str, Any]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(export_module, "CHUNK_ROWS", 7)
    monkeypatch.setattr(request_csv, "CHUNK_ROWS", 7)
    steps: list[int] = []
    with engine.connect() as conn:
        total = count_rows(conn, "2026-11", "requests")
        result = write_export(
            conn, month="2026-11", detail="requests", out=tmp_path / "r.csv", progress=steps.append
        )
        summary_total = count_rows(conn, "2026-11", "summary")
        summary = write_export(conn, month="2026-11", out=tmp_path / "s.csv")
    assert sum(steps) == total == result.rows == 400
    assert set(steps[:-1]) == {7}
    assert summary_total == summary.rows


def test_empty_month_and_default_path(engine: Engine, tmp_path: Path) -> None:
    assert default_path("2026-11", "summary") == Path("reports/costs-2026-11.csv")
    assert default_path("2026-11", "requests") == Path("reports/costs-2026-11-requests.csv")
    with engine.connect() as conn:
        out = tmp_path / "sub" / "x.csv"
        with pytest.raises(InvalidInput, match=r"folder .*sub does not exist"):
            write_export(conn, month="2026-02", out=out, create_folder=False)
        result = write_export(conn, month="2026-02", out=out)  # the library makes it
        with pytest.raises(InvalidInput, match="YYYY-MM"):
            write_export(conn, month="2026-13", out=tmp_path / "y.csv")
    assert result.rows == 0
    assert (tmp_path / "sub" / "x.csv").read_text().splitlines() == [",".join(SUMMARY_COLUMNS)]
    assert not (tmp_path / "y.csv").exists()


@pytest.mark.parametrize(
    "filters",
    [
        AttributionFilter(tag="feature=rag"),
        AttributionFilter(end_user="user-1"),
        AttributionFilter(tag="beta", end_user="=cmd"),
    ],
)
def test_tag_and_end_user_filters_on_both_csvs(
    engine: Engine,
    month_data: tuple[Org, list[dict[str, Any]]],
    tmp_path: Path,
    filters: AttributionFilter,
) -> None:
    _, records = month_data
    november = [
        r
        for r in records
        if r.started_at.strftime("%Y-%m") == "2026-11"
        and (filters.tag is None or filters.tag in (r.tags or "").split(","))
        and (filters.end_user is None or r.end_user == filters.end_user)
    ]
    assert november  # the filter selects something
    with engine.connect() as conn:
        detail = write_export(
            conn, month="2026-11", detail="requests", out=tmp_path / "r.csv", filters=filters
        )
        summary = write_export(conn, month="2026-11", out=tmp_path / "s.csv", filters=filters)
        counted = count_rows(conn, "2026-11", "requests", filters)
    rows = _read(tmp_path / "r.csv")
    assert {r["request_id"] for r in rows} == {r.request_id for r in november}
    assert detail.rows == counted == len(november)
    expected = sum(r.total_cost for r in november)
    assert detail.totals["total_cost"] == summary.totals["total_cost"] == expected
    assert sum(int(r["requests"]) for r in _read(tmp_path / "s.csv")) == len(november)
