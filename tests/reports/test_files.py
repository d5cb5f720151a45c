"""The report files' shared rules: formula neutralisation (Python and SQL alike), the
umask, missing folders, unwritable paths."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text, update

from metering.errors import InvalidInput
from metering.reports.export import write_export
from metering.reports.files import FORMULA_STARTS, atomic_file, neutralise, neutralise_sql
from metering.reports.focus_file import write_focus
from metering.storage.models import Customer, Team, UsageRecord, VirtualKey
from tests.reports.factory import generate_month, seed_org

TEXT = ("SubAccountName", "ResourceId", "ResourceName", "SkuId", "SkuPriceId", "ChargeDescription")
AWKWARD = [
    '=HYPERLINK("http://x")',
    "+1",
    "-2+3",
    "@SUM(A1)",
    "\tTAB",
    "\rCR",
    "plain",
    "a=b",
    "",
    "'already",
    "=",
]


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_neutralise_prefixes_a_quote_to_formula_starts() -> None:
    assert neutralise("=1+1") == "'=1+1"
    assert neutralise("+1") == "'+1"
    assert neutralise("-1") == "'-1"
    assert neutralise("@x") == "'@x"
    assert neutralise("\tx") == "'\tx"
    assert neutralise("\rx") == "'\rx"
    assert neutralise("x=1") == "x=1"
    assert neutralise("") == ""
    assert neutralise(None) is None
    assert set(FORMULA_STARTS) == {"=", "+", "-", "@", "\t", "\r"}


def test_neutralise_sql_equals_the_python_rule(engine: Engine) -> None:
    expr = neutralise_sql("CAST(:v AS TEXT)")
    with engine.connect() as conn:
        for value in AWKWARD:
            got = conn.execute(text(f"SELECT {expr}"), {"v": value}).scalar_one()
            assert got == neutralise(value), repr(value)


def test_every_csv_neutralises_names_and_models(engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        org = seed_org(conn)
        generate_month(conn, org, n=60)
        conn.execute(update(VirtualKey).where(VirtualKey.id == 1).values(name="=cmd|' /C calc'!A0"))
        conn.execute(update(Team).where(Team.id == 1).values(name="@team"))
        conn.execute(update(Customer).where(Customer.id == 1).values(name="\tacme"))
        conn.execute(update(UsageRecord).values(requested_model="-2+3"))
    with engine.connect() as conn:
        for detail in ("summary", "requests"):
            out = tmp_path / f"{detail}.csv"
            write_export(conn, month="2026-11", detail=detail, out=out)  # type: ignore[arg-type]
            with out.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
            assert rows
            keys = {r["key"] for r in rows}
            assert "'=cmd|' /C calc'!A0" in keys and "=cmd|' /C calc'!A0" not in keys
            assert {r["team"] for r in rows} <= {"'@team", "ml", ""}
            assert {r["customer"] for r in rows} <= {"'\tacme", ""}
            assert all(r["currency"] == "USD" for r in rows)
            if detail == "requests":
                assert {r["requested_model"] for r in rows} == {"'-2+3"}
                assert {r["billing_month"] for r in rows} == {"2026-11"}
            for row in rows:  # amounts keep their sign: never neutralised
                assert not any(v.startswith("'") for k, v in row.items() if k.endswith("_cost"))
        out = tmp_path / "focus.csv"
        write_focus(conn, month="2026-11", out=out)
        with out.open(newline="") as fh:
            focus = list(csv.DictReader(fh))
        names = {r["SubAccountName"] for r in focus}
        assert "'=cmd|' /C calc'!A0" in names and "=cmd|' /C calc'!A0" not in names
        tags = [json.loads(r["Tags"]) for r in focus]  # JSON cells start with '{'
        assert {"key": "=cmd|' /C calc'!A0", "team": "@team", "customer": "\tacme"} in tags
        for r in focus:
            assert not any(r[c].startswith(("=", "+", "-", "@", "\t", "\r")) for c in TEXT)


def test_files_get_the_umask_and_need_their_folder(
    engine: Engine, tmp_path: Path, umask_022: None
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    with engine.connect() as conn:
        for detail in ("summary", "requests"):
            out = folder / f"{detail}.csv"
            write_export(conn, month="2026-11", detail=detail, out=out)  # type: ignore[arg-type]
            assert out.stat().st_mode & 0o777 == 0o644
        with pytest.raises(InvalidInput, match=r"folder .*missing does not exist"):
            write_export(
                conn, month="2026-11", out=tmp_path / "missing" / "x.csv", create_folder=False
            )
        assert not (tmp_path / "missing").exists()
    assert sorted(p.name for p in folder.iterdir()) == ["requests.csv", "summary.csv"]


def test_an_unwritable_file_is_one_error_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    unwritable = pytest.raises(InvalidInput, match=r"^cannot write /sys/x\.csv: ")
    with unwritable, atomic_file(Path("/sys/x.csv")) as fh:
        fh.write("x")
    with (
        pytest.raises(InvalidInput, match="cannot write"),
        atomic_file(tmp_path / "file" / "x.csv") as fh,
    ):
        fh.write("x")
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "y.csv") as fh:
        fh.write("x")
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
