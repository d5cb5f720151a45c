from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import date, datetime
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from metering.errors import InvalidInput
from metering.reports.common import DayWindow
from metering.reports.spend import (
    GROUP_FIELDS,
    METRIC_COLUMNS,
    SpendFilter,
    group_columns,
    parse_group_by,
    spend_groups,
    spend_rows,
    spend_totals,
)
from metering.storage.prices import load_price_book
from metering.storage.records import write_records
from tests.reports.conftest import records_frame
from tests.reports.factory import Org, build_record, random_usage

GROUPINGS = [
    *((f,) for f in GROUP_FIELDS),
    ("key", "model"),
    ("team", "customer"),
    ("provider", "day"),
    ("customer", "month", "provider"),
    ("tag", "end_user"),
    ("end_user", "model"),
    GROUP_FIELDS,
]


def _expected(raw: pd.DataFrame, by: tuple[str, ...]) -> list[dict[str, Any]]:
    """The oracle: pandas over the raw records; a record is in each of its tags' groups."""
    columns = group_columns(by)
    if "tag" in by:
        raw = raw.explode("tag_list").rename(columns={"tag_list": "tag"})
    grouped = (
        raw.groupby(columns, dropna=False)[list(METRIC_COLUMNS)]
        .sum()
        .reset_index()
        .sort_values(columns, na_position="first", kind="stable")
    )
    out = []
    for rec in grouped.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and v != v else v) for k, v in rec.items()})
    return out


def test_spend_agrees_with_pandas_over_raw_records_every_grouping(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]]
) -> None:
    org, records = month_data
    raw = records_frame(org, records)
    november = raw[raw["month"] == "2026-11"]
    window = SpendFilter(window=DayWindow(date(2026, 11, 1), date(2026, 11, 30)))
    with engine.connect() as conn:
        for by in GROUPINGS:
            groups = spend_groups(conn, by=by, filters=window)
            assert groups == _expected(november, by), by
            if "tag" in by:  # a record with two tags is in both groups
                continue
            assert spend_totals(groups) == {c: int(november[c].sum()) for c in METRIC_COLUMNS}


def test_tag_groups_count_a_request_in_each_of_its_tags(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]]
) -> None:
    org, records = month_data
    raw = records_frame(org, records)
    november = raw[raw["month"] == "2026-11"]
    window = SpendFilter(window=DayWindow(date(2026, 11, 1), date(2026, 11, 30)))
    with engine.connect() as conn:
        groups = spend_groups(conn, by=("tag",), filters=window)
        rag = spend_groups(conn, by=(), filters=replace(window, tag="feature=rag"))
        user = spend_groups(conn, by=("customer",), filters=replace(window, end_user="user-1"))
    by_tag = {g["tag"]: g for g in groups}
    multi = november[november["tag_list"].map(len) > 1]
    assert len(multi) > 0  # the generated month has requests with two tags
    assert sum(g["requests"] for g in groups) == len(november) + sum(
        len(t) - 1 for t in november["tag_list"]
    )
    tagged = november[november["tags"].fillna("").str.split(",").map(lambda t: "feature=rag" in t)]
    assert rag[0]["total_cost"] == by_tag["feature=rag"]["total_cost"] == tagged["total_cost"].sum()
    assert rag[0]["requests"] == len(tagged)
    ones = november[november["end_user"] == "user-1"]
    assert sum(g["total_cost"] for g in user) == ones["total_cost"].sum()
    assert sum(g["requests"] for g in user) == len(ones)


def test_spend_without_window_covers_everything(
    engine: Engine, month_data: tuple[Org, list[dict[str, Any]]]
) -> None:
    org, records = month_data
    raw = records_frame(org, records)
    with engine.connect() as conn:
        groups = spend_groups(conn, by=("month",))
    assert [g["month"] for g in groups] == ["2026-10", "2026-11", "2026-12"]
    assert spend_totals(groups) == {c: int(raw[c].sum()) for c in METRIC_COLUMNS}


def test_generated_month_exercises_every_token_class_and_cost_source(
    month_data: tuple[Org, list[dict[str, Any]]],
) -> None:
    _, records = month_data
    raw = pd.DataFrame(records)
    for column in (
        "cached_read_tokens",
        "cached_write_tokens",
        "cached_write_1h_tokens",
        "reasoning_tokens",
        "citation_tokens",
        "search_queries",
        "adjustment_cost",
        "citation_cost",
        "search_cost",
        "cache_write_cost",
    ):
        assert (raw[column] != 0).any(), column
    assert set(raw["cost_source"]) >= {"computed", "reported", "unpriced"}
    assert set(raw["status"]) == {"success", "upstream_error"}


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        (SpendFilter(provider="openai"), lambda r: r.provider == "openai"),
        (SpendFilter(model="gpt-4o"), lambda r: r.model == "gpt-4o"),
        (
            SpendFilter(model="anthropic/claude-sonnet-4-5"),
            lambda r: r.model == "claude-sonnet-4-5",
        ),
        (SpendFilter(key_id=2), lambda r: r.key_id == 2),
        (
            SpendFilter(window=DayWindow(date(2026, 11, 10), date(2026, 11, 10))),
            lambda r: r.started_at.date() == date(2026, 11, 10),
        ),
    ],
)
def test_spend_filters(
    engine: Engine,
    month_data: tuple[Org, list[dict[str, Any]]],
    filters: SpendFilter,
    keep: Any,
) -> None:
    _, records = month_data
    chosen = [r for r in records if keep(r)]
    assert chosen
    with engine.connect() as conn:
        groups = spend_groups(conn, by=("provider",), filters=filters)
    totals = spend_totals(groups)
    assert totals["requests"] == len(chosen)
    assert totals["total_cost"] == sum(r.total_cost for r in chosen)
    assert totals["reasoning_tokens"] == sum(r.reasoning_tokens for r in chosen)


def test_utc_day_boundaries(engine: Engine) -> None:
    import random

    from tests.reports.factory import seed_org

    rng = random.Random(1)
    with engine.begin() as conn:
        org = seed_org(conn)
        book = load_price_book(conn)
        late = build_record(
            book,
            org,
            request_id="late",
            key="alice",
            model="openai/gpt-4o",
            at=datetime(2026, 11, 3, 23, 59, 59, 999999),
            usage=random_usage(rng, reported=False),
        )
        early = build_record(
            book,
            org,
            request_id="early",
            key="alice",
            model="openai/gpt-4o",
            at=datetime(2026, 11, 4, 0, 0, 0),
            usage=random_usage(rng, reported=False),
        )
        write_records(conn, [late, early])
    with engine.connect() as conn:
        by_day = spend_groups(conn, by=("day",))
        only_3rd = spend_groups(
            conn, by=(), filters=SpendFilter(window=DayWindow(until=date(2026, 11, 3)))
        )
        only_4th = spend_groups(
            conn, by=(), filters=SpendFilter(window=DayWindow(since=date(2026, 11, 4)))
        )
    assert [g["day"] for g in by_day] == ["2026-11-03", "2026-11-04"]
    assert [g["total_cost"] for g in by_day] == [late.total_cost, early.total_cost]
    assert spend_totals(only_3rd)["total_cost"] == late.total_cost
    assert spend_totals(only_4th)["total_cost"] == early.total_cost


def test_spend_rows_are_decimal_strings() -> None:
    groups = [{"provider": "openai", **dict.fromkeys(METRIC_COLUMNS, 0), "total_cost": 7_250_000}]
    (row,) = spend_rows(groups)
    assert row["total_cost"] == "0.00725"
    assert row["input_cost"] == "0"
    assert row["requests"] == 0 and isinstance(row["requests"], int)


def test_empty_database_gives_no_rows(engine: Engine) -> None:
    with engine.connect() as conn:
        assert spend_groups(conn, by=("key",)) == []
        assert spend_groups(conn, by=()) == []


def test_group_by_parsing() -> None:
    assert parse_group_by("key, model,key") == ("key", "model")
    with pytest.raises(InvalidInput, match="cannot group by 'week'"):
        parse_group_by("week")
    with pytest.raises(InvalidInput, match="before --since"):
        DayWindow(date(2026, 11, 2), date(2026, 11, 1))


def test_all_groupings_listed() -> None:
    assert set(itertools.chain.from_iterable(GROUPINGS)) == set(GROUP_FIELDS)
