"""The FOCUS export: focus-validator 1.0 passes, the month adds up to ``metering spend``
to the nano-dollar, ``ListCost = ListUnitPrice × PricingQuantity`` exactly, repriced
records are corrections, unpriced ones are quantities without a price."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from metering.core.billing import bill_request
from metering.core.components import COMPONENT_TABLE, COMPONENTS
from metering.core.money import parse_usd_to_nano
from metering.core.records import UsageRow, buckets_from_record, cost_columns
from metering.core.sheets import parse_toml_sheet
from metering.reports.common import DayWindow, parse_month
from metering.reports.focus import BUCKET_COLUMNS, bucket_sql
from metering.reports.focus_file import FOCUS_COLUMNS, write_focus
from metering.reports.reprice import reprice
from metering.storage.models import DailyRollup, UsageRecord
from metering.storage.prices import load_price_book, save_versions
from metering.storage.records import write_records
from tests.reports.factory import generate_month, seed_org

GPT4O_CORRECTION = """
provider = "openai"
effective_from = "2026-11-15"
source = "test correction"
[models."gpt-4o"]
input = "2.00"
cache_read = "1.00"
output = "8.00"
"""


def _cache_hit(conn: Any, template: UsageRow) -> UsageRow:
    """A semantic gateway cache hit: tokens kept, billed what the gateway reported."""
    book = load_price_book(conn)
    version = book.lookup(template.provider, template.model, template.started_at.date())
    bill = bill_request(
        buckets_from_record(template),
        version,
        reported_total=1_234_567,
        cache_hit_type="semantic",
    )
    return template._replace(
        request_id="req-cache-hit", cache_hit=True, cache_hit_type="semantic", **cost_columns(bill)
    )


def realistic_month(engine: Engine) -> None:
    """Several keys, models and components, reported costs, an unpriced model, a gateway
    cache hit, and the second half of the month repriced at corrected gpt-4o prices."""
    with engine.begin() as conn:
        records = generate_month(conn, seed_org(conn), n=400)
        priced = next(
            r for r in records if r.model == "gpt-4o" and r.status == "success" and r.prompt_tokens
        )
        write_records(conn, [_cache_hit(conn, priced)])
        assert save_versions(conn, parse_toml_sheet(GPT4O_CORRECTION, source="test")).added
    assert reprice(engine, window=DayWindow(), now=datetime(2026, 12, 2)).changed > 0


def read_focus(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == FOCUS_COLUMNS
        return list(reader)


def month_totals(engine: Engine, month: str) -> dict[str, int]:
    window = parse_month(month)
    u = UsageRecord
    columns = [*(c.column for c in COMPONENT_TABLE), "adjustment_cost", "total_cost"]
    with engine.connect() as conn:
        row = conn.execute(
            select(*(func.coalesce(func.sum(getattr(u, c)), 0) for c in columns)).where(
                *window.where_instant(u.started_at)
            )
        ).one()
        rollup = conn.execute(
            select(func.sum(DailyRollup.total_cost)).where(*window.where_day(DailyRollup.day))
        ).scalar_one()
    totals = {c: int(v) for c, v in zip(columns, row, strict=True)}
    assert totals["total_cost"] == int(rollup)  # what `metering spend` sums
    return totals


def _nano(text: str) -> int:
    return parse_usd_to_nano(text, allow_negative=True)


def test_focus_validator_passes_on_a_realistic_month(engine: Engine, tmp_path: Path) -> None:
    realistic_month(engine)
    out = tmp_path / "focus.csv"
    with engine.connect() as conn:
        result = write_focus(conn, month="2026-11", out=out)
    assert result.rows > 100
    check = run_validator(out)
    assert check.returncode == 0, check.stderr
    assert "Validation succeeded." in check.stdout, check.stdout

    # and it does look: a bad currency and frequency in one row fail the same file
    rows = read_focus(out)
    rows[3] |= {"BillingCurrency": "XYZ", "ChargeFrequency": "Sometimes"}
    broken = tmp_path / "broken.csv"
    with broken.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, FOCUS_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    check = run_validator(broken)
    assert "Validation failed!" in check.stdout, check.stdout
    assert "BillingCurrency_IsCurrencyCode failed" in check.stdout
    assert "ChargeFrequency_Enum failed" in check.stdout


def run_validator(path: Path) -> subprocess.CompletedProcess[str]:
    """focus-validator 1.0.0 on ``path`` against FOCUS 1.0. It is in the test extra:
    missing, this fails (it never skips). It reads its currency list from a path relative
    to the working directory (focus_validator/utils/currency_codes.csv), so it runs from
    where it is installed."""
    spec = importlib.util.find_spec("focus_validator")
    assert spec is not None and spec.origin, "focus-validator is not installed (test extra)"
    args = ["--data-file", str(path), "--validate-version", "1.0"]
    return subprocess.run(
        [sys.executable, "-m", "focus_validator.main", *args],
        cwd=Path(spec.origin).parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )


def test_focus_rows_add_up_and_list_costs_are_exact(engine: Engine, tmp_path: Path) -> None:
    realistic_month(engine)
    out = tmp_path / "focus.csv"
    with engine.connect() as conn:
        result = write_focus(conn, month="2026-11", out=out)
    rows = read_focus(out)
    totals = month_totals(engine, "2026-11")
    assert result.rows == len(rows)
    assert result.billed == sum(_nano(r["BilledCost"]) for r in rows) == totals["total_cost"]
    assert sum(_nano(r["EffectiveCost"]) for r in rows) == totals["total_cost"]

    by_component: dict[str, int] = defaultdict(int)
    for r in rows:
        assert r["BillingCurrency"] == "USD"
        assert r["BillingPeriodStart"] == "2026-11-01T00:00:00Z"
        assert r["BillingPeriodEnd"] == "2026-12-01T00:00:00Z"
        assert r["ChargePeriodStart"][:7] == "2026-11"
        assert isinstance(json.loads(r["Tags"])["key"], str)
        if r["ListUnitPrice"]:
            quantity, unit = Decimal(r["PricingQuantity"]), Decimal(r["ListUnitPrice"])
            assert Decimal(r["ListCost"]) == unit * quantity  # exactly, no rounding
            assert r["ContractedCost"] == r["ListCost"]
            if (unit * 10**9) % 1 == 0:  # a whole nano-USD a unit: billed exactly at list
                assert Decimal(r["BilledCost"]) == Decimal(r["ListCost"]), r
        part = r["SkuId"].split("/")[-1]  # a component, adjustment, or as-first-billed
        assert part in {*COMPONENTS, "adjustment", "as-first-billed"}
        by_component[part] += _nano(r["BilledCost"])
    for c in COMPONENT_TABLE:
        assert by_component[c.name] == totals[c.column], c.name
    seen = {r["SkuMeter"] for r in rows if r["SkuMeter"]}
    assert seen >= {"input_text", "cache_read", "cache_write", "cache_write_1h", "output"}
    assert seen >= {"reasoning", "citation", "search_queries"}
    assert any("/above-" in r["SkuPriceId"] for r in rows)  # a long-context tier's price
    assert by_component["adjustment"] == totals["adjustment_cost"]
    assert by_component["as-first-billed"] == 0  # each first charge and its reversal

    # Tags carry each charge's end user and request tags: per tag and per end user, the
    # rows add up to the records'
    window = parse_month("2026-11")
    with engine.connect() as conn:
        u = UsageRecord
        stored = conn.execute(
            select(u.end_user, u.end_user_scope, u.tags, u.total_cost).where(
                *window.where_instant(u.started_at)
            )
        ).all()
    tagged: dict[tuple[str, str | None], int] = defaultdict(int)
    users: dict[str | None, int] = defaultdict(int)
    for who, _, tags, cost in stored:
        users[who] += cost
        for tag in (tags or "").split(",") if tags else ():
            name, sep, value = tag.partition("=")
            tagged[(f"tag:{name}", value if sep else None)] += cost
    seen_tags: dict[tuple[str, str | None], int] = defaultdict(int)
    seen_users: dict[str | None, int] = defaultdict(int)
    for r in rows:
        tags = json.loads(r["Tags"])
        seen_users[tags.get("end_user")] += _nano(r["BilledCost"])
        for name, value in tags.items():
            if name.startswith("tag:"):  # several values of one key are comma-joined
                for one in value.split(",") if value is not None else (None,):
                    seen_tags[(name, one)] += _nano(r["BilledCost"])
        assert tags.get("request_tags") in {None, *(t for _, _, t, _ in stored)}
        if "end_user" in tags:
            assert tags["end_user_scope"] in {"customer acme", "key carol", "key dave"}
    assert ("tag:feature", "rag") in seen_tags and ("tag:beta", None) in seen_tags
    assert dict(seen_tags) == dict(tagged)
    assert dict(seen_users) == dict(users)


def test_unpriced_cache_hits_and_corrections(engine: Engine, tmp_path: Path) -> None:
    realistic_month(engine)
    out = tmp_path / "focus.csv"
    with engine.connect() as conn:
        write_focus(conn, month="2026-11", out=out)
    rows = read_focus(out)

    unpriced = [r for r in rows if "unpriced: no price known" in r["ChargeDescription"]]
    assert unpriced and {r["ResourceId"] for r in unpriced} == {"mistral/mistral-large-unpriced"}
    for r in unpriced:
        assert r["ListUnitPrice"] == ""
        assert r["SkuPriceId"].endswith("@unpriced")
        assert r["BilledCost"] == r["ListCost"] == "0"
        assert Decimal(r["PricingQuantity"]) > 0

    hits = [r for r in rows if "cache hit" in r["ChargeDescription"]]
    assert {r["ChargeCategory"] for r in hits} == {"Usage", "Adjustment"}
    assert sum(_nano(r["BilledCost"]) for r in hits) == 1_234_567

    corrections = [r for r in rows if r["ChargeClass"] == "Correction"]
    restated = [r for r in corrections if r["ChargeCategory"] == "Usage"]
    assert restated and all(r["ChargePeriodStart"] >= "2026-11-15" for r in restated)
    assert all(r["ResourceId"] == "openai/gpt-4o" for r in corrections)
    firsts = [r for r in rows if r["SkuId"] == "openai/gpt-4o/as-first-billed"]
    reversals = [r for r in firsts if r["ChargeClass"] == "Correction"]
    assert reversals and len(firsts) == 2 * len(reversals)
    assert sum(_nano(r["BilledCost"]) for r in firsts) == 0  # a charge and its reversal
    new_prices = {r["SkuPriceId"].split("@")[1] for r in restated if r["SkuPriceId"]}
    assert len(new_prices) == 1  # the correction's version


def test_bucket_sql_equals_buckets_from_record(engine: Engine) -> None:
    with engine.begin() as conn:
        generate_month(conn, seed_org(conn), n=40)
        u = UsageRecord
        buckets = [*BUCKET_COLUMNS]
        for row in conn.execute(select(u, *(bucket_sql(b).label(f"b_{b}") for b in buckets))):
            m = row._mapping
            expected = buckets_from_record(UsageRow.from_mapping(m))
            for b in buckets:
                assert m[f"b_{b}"] == getattr(expected, b), b
    # every priced bucket of the component table is mapped
    assert {t.bucket for c in COMPONENT_TABLE for t in c.terms} == {*buckets, "requests"}


def test_parquet_has_the_same_rows(engine: Engine, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="the parquet extra is not installed")
    realistic_month(engine)
    with engine.connect() as conn:
        csv_result = write_focus(conn, month="2026-11", out=tmp_path / "f.csv")
        pq_result = write_focus(conn, month="2026-11", out=tmp_path / "f.parquet")
    table = pq.read_table(tmp_path / "f.parquet")
    assert table.column_names == list(FOCUS_COLUMNS)
    assert table.num_rows == pq_result.rows == csv_result.rows
    billed = sum(int(v * 10**9) for v in table.column("BilledCost").to_pylist())
    assert billed == pq_result.billed == csv_result.billed
    assert str(table.schema.field("BilledCost").type) == "decimal128(38, 20)"


def test_empty_month_is_a_header(engine: Engine, tmp_path: Path) -> None:
    with engine.connect() as conn:
        result = write_focus(conn, month="2026-02", out=tmp_path / "f.csv")
    assert (result.rows, result.billed) == (0, 0)
    assert (tmp_path / "f.csv").read_text() == ",".join(FOCUS_COLUMNS) + "\n"
