"""Migrations: an empty database upgrades to head without drift; reruns are no-ops."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, func, inspect, text
from sqlalchemy.engine import make_url

from metering.core.pricing import PriceBook, Rates
from metering.errors import DatabaseUnavailable
from metering.storage.engine import make_engine
from metering.storage.migrate import (
    SCHEMA_REVISION,
    alembic_config,
    current_revision,
    ensure_schema,
    head_revision,
    upgrade,
)
from metering.storage.models import Base
from metering.storage.prices import _values, shipped_sheet_versions, sync_shipped_sheets


def seed_old_prices(engine: Engine) -> PriceBook:
    """The shipped price versions in a database at an older revision, through its own
    columns (today's models name columns it does not have yet); their book, with ids."""
    from datetime import datetime

    from sqlalchemy import MetaData, Table, insert, select

    table = Table("price_versions", MetaData(), autoload_with=engine)
    versions = shipped_sheet_versions()
    rows = [
        {c: v for c, v in _values(version).items() if c in table.c}
        | {"created_at": datetime(2026, 1, 1)}
        for version in versions
    ]
    with engine.begin() as conn:
        conn.execute(insert(table), rows)
        ids = {
            (p, m, d): i
            for i, p, m, d in conn.execute(
                select(table.c.id, table.c.provider, table.c.model, table.c.effective_from)
            )
        }
    return PriceBook(
        [replace(v, id=ids[(v.provider, v.model, v.effective_from)]) for v in versions]
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str | None
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    if pg_url is None:
        pytest.skip("no PostgreSQL reachable")
    name = f"metering_empty_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_upgrade_empty_database_to_head_without_drift(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) is None
        before, after = upgrade(engine)
        assert (before, after) == (None, head_revision(engine))
        tables = set(inspect(engine).get_table_names())
        assert {t.name for t in Base.metadata.sorted_tables} <= tables
        command.check(alembic_config(engine))  # raises if models and migrations disagree
        assert upgrade(engine) == (after, after)  # a second upgrade is a no-op
    finally:
        engine.dispose()


def test_upgrade_keeps_rows(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        upgrade(engine)
        added = sync_shipped_sheets(engine).added
        assert len(added) >= 11
        upgrade(engine)
        assert sync_shipped_sheets(engine).added == []  # nothing added twice
        with engine.connect() as conn:
            count = conn.execute(text("select count(*) from price_versions")).scalar_one()
        assert count == len(added)
    finally:
        engine.dispose()


def test_schema_revision_is_the_head_of_the_migrations(tmp_path: Path) -> None:
    """ensure_schema's one-SELECT check trusts SCHEMA_REVISION: a new revision updates it."""
    engine = make_engine(f"sqlite:///{tmp_path / 'head.db'}")
    try:
        assert head_revision(engine) == SCHEMA_REVISION
    finally:
        engine.dispose()


def test_open_database_refuses_an_outdated_schema(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        upgrade(engine, "0001")
        with pytest.raises(DatabaseUnavailable, match="run `metering db upgrade`"):
            ensure_schema(engine)
        upgrade(engine)
        ensure_schema(engine)
    finally:
        engine.dispose()


def test_upgrade_from_the_previous_revision_keeps_and_backfills_rows(empty_db_url: str) -> None:
    """0003 → head with records in place: rows kept, estimated ones flagged."""
    from datetime import datetime

    from sqlalchemy import MetaData, Table, insert, select

    from tests.storage.test_records import make_key, record_for

    engine = make_engine(empty_db_url)
    try:
        upgrade(engine, "0003")
        book = seed_old_prices(engine)
        key = make_key(engine)
        at = datetime(2026, 3, 3, 12, 0)
        old_table = Table("usage_records", MetaData(), autoload_with=engine)
        rows = []
        for request_id, source in (("r-est", "estimated"), ("r-comp", "computed")):
            values = record_for(engine, request_id, at, key, book=book)._asdict() | {
                "cost_source": source
            }
            rows.append({c: v for c, v in values.items() if c in old_table.c})
        assert "usage_estimated" not in old_table.c
        with engine.begin() as conn:
            conn.execute(insert(old_table), rows)
        upgrade(engine)
        new_table = Table("usage_records", MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            flags = dict(
                conn.execute(select(new_table.c.request_id, new_table.c.usage_estimated)).all()
            )
            totals = conn.execute(select(func.sum(new_table.c.total_cost))).scalar_one()
        assert flags == {"r-est": True, "r-comp": False}
        assert totals == 2 * 7_250_000
        command.check(alembic_config(engine))
    finally:
        engine.dispose()


def test_upgrade_from_0004_keeps_records_and_reservations(empty_db_url: str) -> None:
    """0004 → head (0005: serving processes, calls in flight) with records, a budget and a
    reservation in place: all kept; the new tables start empty and take rows."""
    from datetime import datetime

    from sqlalchemy import MetaData, Table, insert, select

    from metering.core.interrupted import InFlightCall
    from metering.storage.in_flight import insert_calls, register_process
    from tests.storage.test_records import make_key, record_for

    engine = make_engine(empty_db_url)
    try:
        upgrade(engine, "0004")
        book = seed_old_prices(engine)
        key = make_key(engine)
        at = datetime(2026, 3, 3, 12, 0)
        assert "calls_in_flight" not in inspect(engine).get_table_names()
        old = MetaData()
        records = Table("usage_records", old, autoload_with=engine)
        budgets = Table("budgets", old, autoload_with=engine)
        reservations = Table("reservations", old, autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(
                insert(records), [record_for(engine, "r-old", at, key, book=book)._asdict()]
            )
            budget_id = conn.execute(
                insert(budgets)
                .values(owner_type="key", owner_id=key, limit_nano=10**10, period="monthly",
                        timezone="UTC", period_start=datetime(2026, 3, 1), spent_nano=7_250_000,
                        reserved_nano=5, created_at=at, updated_at=at)
                .returning(budgets.c.id)
            ).scalar_one()  # fmt: skip
            conn.execute(
                insert(reservations).values(
                    request_id="r-held", budget_id=budget_id, amount_nano=5, created_at=at,
                    expires_at=at,
                )
            )  # fmt: skip
        assert upgrade(engine) == ("0004", head_revision(engine))
        with engine.begin() as conn:
            assert conn.execute(select(records.c.request_id)).scalars().all() == ["r-old"]
            assert conn.execute(select(reservations.c.request_id)).scalars().all() == ["r-held"]
            process_id = register_process(conn, host="h", pid=1, now=at)
            call = InFlightCall("r-new", process_id, key, None, None, "openai/gpt-4o",
                                "text_completion", True, at, 10, 20, None)  # fmt: skip
            insert_calls(conn, [call])
            stored = conn.execute(text("select request_id, stream from calls_in_flight")).all()
        assert [tuple(r) for r in stored] == [("r-new", True)]
        command.check(alembic_config(engine))
    finally:
        engine.dispose()


def test_upgrade_from_0005_adds_the_one_hour_writes_to_records_and_rollups(
    empty_db_url: str,
) -> None:
    """0005 → head (0006: cached_write_1h_tokens) with a record and its rollup in place:
    both kept, with no 1-hour writes; a writer of the previous version (its inserts do not
    name the column) still works; a new record adds its 1-hour writes to the old rollup."""
    from datetime import date, datetime

    from sqlalchemy import MetaData, Table, insert, select

    from metering.storage.records import write_records
    from tests.storage.test_records import make_key, record_for

    engine = make_engine(empty_db_url)
    try:
        upgrade(engine, "0005")
        book = seed_old_prices(engine)
        key = make_key(engine)
        at = datetime(2026, 3, 3, 12, 0)
        old = MetaData()
        records = Table("usage_records", old, autoload_with=engine)
        rollups = Table("daily_rollups", old, autoload_with=engine)
        assert "cached_write_1h_tokens" not in records.c
        assert "cached_write_1h_tokens" not in rollups.c

        def old_record(request_id: str) -> dict[str, object]:
            values = record_for(engine, request_id, at, key, book=book)._asdict()
            return {c: v for c, v in values.items() if c in records.c}

        rollup = {c.name: 0 for c in rollups.c if c.name != "id"} | {
            "day": date(2026, 3, 3), "key_id": key, "provider": "openai", "model": "gpt-4o",
            "requests": 1, "cached_write_tokens": 70, "total_cost": 7_250_000,
        }  # fmt: skip
        with engine.begin() as conn:
            conn.execute(insert(records), [old_record("r-old")])
            conn.execute(insert(rollups), [rollup])
        assert upgrade(engine) == ("0005", head_revision(engine))
        command.check(alembic_config(engine))

        new = MetaData()
        records = Table("usage_records", new, autoload_with=engine)
        rollups = Table("daily_rollups", new, autoload_with=engine)
        with engine.begin() as conn:
            conn.execute(insert(records), [old_record("r-by-old-writer")])  # the server default
            one_hour = record_for(engine, "r-new", at, key, book=book)._replace(
                cached_write_tokens=30, cached_write_1h_tokens=20
            )
            assert write_records(conn, [one_hour]) == ["r-new"]
            stored = dict(
                conn.execute(select(records.c.request_id, records.c.cached_write_1h_tokens)).all()
            )
            rolled = conn.execute(
                select(rollups.c.requests, rollups.c.cached_write_tokens,
                       rollups.c.cached_write_1h_tokens)
            ).one()  # fmt: skip
        assert stored == {"r-old": 0, "r-by-old-writer": 0, "r-new": 20}
        assert tuple(rolled) == (2, 100, 20)
    finally:
        engine.dispose()


def test_upgrade_from_0006_adds_budget_alerts_with_budgets_in_place(empty_db_url: str) -> None:
    """0006 → head (0007: budget alerts and their outbox) with a record and a budget in
    place: both kept; the new tables start empty, an alert on the old budget takes its
    events from the next settlement; no drift."""
    from datetime import datetime

    from sqlalchemy import MetaData, Table, insert, select

    from metering.storage import ledger
    from metering.storage.alerts import add_alert, alert_history
    from tests.storage.test_records import make_key, record_for

    engine = make_engine(empty_db_url)
    try:
        upgrade(engine, "0006")
        book = seed_old_prices(engine)
        key = make_key(engine)
        at = datetime(2026, 3, 3, 12, 0)
        assert "budget_alerts" not in inspect(engine).get_table_names()
        old = MetaData()
        records = Table("usage_records", old, autoload_with=engine)
        budgets = Table("budgets", old, autoload_with=engine)
        old_record = record_for(engine, "r-old", at, key, book=book)
        with engine.begin() as conn:
            conn.execute(insert(records), [old_record._asdict()])
            budget_id = conn.execute(
                insert(budgets)
                .values(owner_type="key", owner_id=key, limit_nano=10_000_000, period="monthly",
                        timezone="UTC", period_start=datetime(2026, 3, 1),
                        spent_nano=old_record.total_cost, reserved_nano=0, created_at=at,
                        updated_at=at)
                .returning(budgets.c.id)
            ).scalar_one()  # fmt: skip
        assert upgrade(engine) == ("0006", head_revision(engine))
        command.check(alembic_config(engine))
        with engine.begin() as conn:
            assert conn.execute(select(records.c.request_id)).scalars().all() == ["r-old"]
            assert conn.execute(text("select count(*) from budget_alert_events")).scalar() == 0
            alert_id = add_alert(conn, owner_type="key", owner_id=key, url="http://127.0.0.1:9/",
                                 thresholds="80", payload="json", secret="s", now=at)  # fmt: skip
            new = record_for(engine, "r-new", at, key, book=book)
            ledger.record(conn, [(new, ledger.Settlement(budgets=True))], now=at)
            spent = conn.execute(select(budgets.c.spent_nano)).scalar_one()
            (event,) = alert_history(conn, alert_id=alert_id)
        assert spent == 2 * old_record.total_cost == 14_500_000 and budget_id == 1
        assert (event["threshold"], event["status"], event["spent"]) == (80, "pending", "0.0145")
    finally:
        engine.dispose()


def test_upgrade_from_0007_adds_forecasts_to_alerts_in_place(empty_db_url: str) -> None:
    """0007 → head (0008: alert forecasts) with an alert and its event in place: both
    kept, the alert without a forecast, the event without a projection; no drift."""
    from datetime import datetime

    from sqlalchemy import MetaData, Table, insert, select

    engine = make_engine(empty_db_url)
    try:
        upgrade(engine, "0007")
        at = datetime(2026, 3, 3, 12, 0)
        old = MetaData()
        budgets = Table("budgets", old, autoload_with=engine)
        alerts = Table("budget_alerts", old, autoload_with=engine)
        events = Table("budget_alert_events", old, autoload_with=engine)
        assert "forecast" not in alerts.c and "forecast_nano" not in events.c
        with engine.begin() as conn:
            budget_id = conn.execute(
                insert(budgets)
                .values(
                    owner_type="key",
                    owner_id=1,
                    limit_nano=10,
                    period="monthly",
                    timezone="UTC",
                    period_start=datetime(2026, 3, 1),
                    spent_nano=6,
                    reserved_nano=0,
                    created_at=at,
                    updated_at=at,
                )
                .returning(budgets.c.id)
            ).scalar_one()
            alert_id = conn.execute(
                insert(alerts)
                .values(
                    budget_id=budget_id,
                    url="http://h/",
                    thresholds="50",
                    payload="json",
                    secret="s",
                    created_at=at,
                )
                .returning(alerts.c.id)
            ).scalar_one()
            conn.execute(
                insert(events).values(
                    event_id="e1", alert_id=alert_id, budget_id=budget_id, kind="threshold",
                    threshold_pct=50, period_start=datetime(2026, 3, 1), spent_nano=6,
                    limit_nano=10, created_at=at, status="pending", attempts=0,
                    next_attempt_at=at,
                )
            )  # fmt: skip
        assert upgrade(engine) == ("0007", head_revision(engine))
        command.check(alembic_config(engine))
        new = MetaData()
        alerts = Table("budget_alerts", new, autoload_with=engine)
        events = Table("budget_alert_events", new, autoload_with=engine)
        with engine.begin() as conn:
            assert conn.execute(select(alerts.c.id, alerts.c.forecast)).all() == [(alert_id, False)]
            stored = conn.execute(select(events.c.event_id, events.c.forecast_nano)).all()
            assert [tuple(r) for r in stored] == [("e1", None)]
            # a writer of the previous version (its insert does not name the column)
            old_writer = text(
                "insert into budget_alerts (budget_id, url, thresholds, payload, secret, "
                "created_at) values (:budget, 'http://h/2', '80', 'json', 's', :at)"
            )
            conn.execute(old_writer, {"budget": budget_id, "at": at})
            flags = conn.execute(select(alerts.c.forecast).order_by(alerts.c.id)).scalars().all()
        assert flags == [False, False]
    finally:
        engine.dispose()


def test_upgrade_from_0008_keeps_price_versions_and_the_records_that_point_to_them(
    empty_db_url: str,
) -> None:
    """0008 → head (0009: replaced price versions keep their rows) with versions and a
    record in place: ids, rates and the record's link kept (SQLite copies the table with
    its foreign keys off and checks them after); the old constraint is gone, one live
    version per date is still enforced, a replaced one may share its date; no drift."""
    from datetime import datetime

    from sqlalchemy import MetaData, Table, insert, select, update
    from sqlalchemy.exc import IntegrityError

    from metering.storage.prices import load_versions, save_versions
    from tests.storage.test_records import make_key, record_for

    engine = make_engine(empty_db_url)
    try:
        upgrade(engine, "0008")
        book = seed_old_prices(engine)
        key = make_key(engine)
        at = datetime(2026, 3, 3, 12, 0)
        old = MetaData()
        prices = Table("price_versions", old, autoload_with=engine)
        records = Table("usage_records", old, autoload_with=engine)
        assert "replaced_at" not in prices.c
        row = record_for(engine, "r-old", at, key, book=book)
        with engine.begin() as conn:
            conn.execute(insert(records), [row._asdict()])
            before = conn.execute(select(prices).order_by(prices.c.id)).all()
        assert row.price_version_id is not None
        assert upgrade(engine) == ("0008", head_revision(engine))
        command.check(alembic_config(engine))
        new = Table("price_versions", MetaData(), autoload_with=engine)
        with engine.begin() as conn:
            after = conn.execute(select(*[new.c[c.name] for c in prices.c]).order_by(new.c.id))
            assert [tuple(r) for r in after] == [tuple(r) for r in before]
            linked = conn.execute(select(records.c.price_version_id)).scalar_one()
            assert linked == row.price_version_id
            (gpt4o,) = [v for v in load_versions(conn) if v.id == linked]
        # A correction of the version that priced the record is a new row beside it.
        data = gpt4o.rates.as_strings() | {"input": "9"}
        correction = replace(gpt4o, rates=Rates.from_mapping(data), id=None)
        with engine.begin() as conn:
            result = save_versions(conn, [correction], replace=True)
            assert [v.id for v in result.replaced] != [linked]
            same_date = conn.execute(
                select(new.c.id, new.c.replaced_by).where(
                    new.c.provider == "openai", new.c.model == "gpt-4o",
                    new.c.effective_from == gpt4o.effective_from,
                ).order_by(new.c.id)
            ).all()  # fmt: skip
        assert [tuple(r) for r in same_date] == [(linked, result.replaced[0].id),
                                                 (result.replaced[0].id, None)]  # fmt: skip
        with pytest.raises(IntegrityError), engine.begin() as conn:  # two live: refused
            conn.execute(update(new).where(new.c.id == linked).values(replaced_at=None))
    finally:
        engine.dispose()


def test_upgrade_from_0009_adds_the_admin_api_tables_with_rows_in_place(
    empty_db_url: str,
) -> None:
    """0009 → head (0010: admin tokens, audit log, idempotent responses) with a key and a
    budget in place: both kept, the new tables empty and usable; no drift; downgrade and
    upgrade again keep the key."""
    from datetime import datetime

    from sqlalchemy import MetaData, Table, insert, select

    from metering.operations.tokens import create_token_op
    from metering.storage.admin_tokens import authenticate_token
    from metering.storage.audit import AuditFilter, list_audit

    engine = make_engine(empty_db_url)
    try:
        upgrade(engine, "0009")
        at = datetime(2026, 3, 3, 12, 0)
        old = MetaData()
        keys = Table("virtual_keys", old, autoload_with=engine)
        budgets = Table("budgets", old, autoload_with=engine)
        assert "admin_tokens" not in inspect(engine).get_table_names()
        with engine.begin() as conn:
            conn.execute(
                insert(keys).values(
                    id=1, name="app", key_hash="h" * 64, key_prefix="sk-bf-abcd…",
                    allowed_models="[]", enabled=True, created_at=at, updated_at=at,
                )
            )  # fmt: skip
            conn.execute(
                insert(budgets).values(
                    owner_type="key", owner_id=1, limit_nano=10, period="monthly",
                    timezone="UTC", period_start=datetime(2026, 3, 1), spent_nano=6,
                    reserved_nano=0, created_at=at, updated_at=at,
                )
            )  # fmt: skip
        assert upgrade(engine) == ("0009", head_revision(engine))
        command.check(alembic_config(engine))
        with engine.begin() as conn:
            assert conn.execute(select(keys.c.name)).scalars().all() == ["app"]
            assert conn.execute(select(budgets.c.spent_nano)).scalars().all() == [6]
            created = create_token_op(conn, name="ops", scopes=(), actor="cli")
        with engine.connect() as conn:
            found = authenticate_token(conn, created.secret)
            assert found is not None and found.name == "ops"
            (row,) = list_audit(conn, AuditFilter())
            assert (row["actor"], row["action"], row["target"]) == (
                "cli",
                "token.create",
                "token:ops",
            )
        command.downgrade(alembic_config(engine), "0009")
        assert "admin_tokens" not in inspect(engine).get_table_names()
        assert upgrade(engine)[0] == "0009"
        with engine.connect() as conn:
            assert conn.execute(select(keys.c.name)).scalars().all() == ["app"]
    finally:
        engine.dispose()


def test_upgrade_from_0010_adds_tags_and_end_users_with_records_in_place(
    empty_db_url: str,
) -> None:
    """0010 → head (0011: tags and end users) with records, their rollup and a call in
    flight in place: all kept, with no end user and no tag; the old rollup rows are copied
    into the end-user and tag rollups, so reconcile agrees at once; a new record with
    tags and an end user is written beside them."""
    from datetime import datetime

    from sqlalchemy import MetaData, Table, insert, select

    from metering.reports.common import DayWindow
    from metering.reports.reconcile import reconcile
    from metering.reports.spend import spend_groups
    from metering.storage.keys import utcnow
    from metering.storage.records import ROLLUP_SUMS, write_records
    from tests.storage.test_records import make_key, record_for

    engine = make_engine(empty_db_url)
    try:
        upgrade(engine, "0010")
        sync_shipped_sheets(engine)
        key = make_key(engine)
        at = datetime(2026, 3, 3, 12, 0)
        old = MetaData()
        records = Table("usage_records", old, autoload_with=engine)
        flights = Table("calls_in_flight", old, autoload_with=engine)
        assert "end_user" not in records.c and "tags" not in records.c

        def old_record(request_id: str) -> dict[str, object]:
            values = record_for(engine, request_id, at, key)._asdict()
            return {c: v for c, v in values.items() if c in records.c}

        rollups = Table("daily_rollups", old, autoload_with=engine)
        ids = ["r-old-0", "r-old-1", "r-old-2"]
        one = record_for(engine, ids[0], at, key)
        rollup = {c.name: 0 for c in rollups.c if c.name != "id"} | {
            "day": at.date(), "key_id": key, "provider": one.provider, "model": one.model,
            "requests": 3, **{c: 3 * getattr(one, c) for c in ROLLUP_SUMS},
        }  # fmt: skip
        with engine.begin() as conn:
            conn.execute(insert(records), [old_record(i) for i in ids])
            conn.execute(insert(rollups), [rollup])
            conn.execute(
                insert(flights),
                [{"request_id": "flying", "process_id": 1, "key_id": key, "team_id": None,
                  "customer_id": None, "requested_model": "openai/gpt-4o",
                  "request_type": "text_completion", "stream": False, "started_at": at,
                  "prompt_tokens": 10, "output_tokens": None, "reserved_nano": None}],
            )  # fmt: skip
        assert upgrade(engine) == ("0010", head_revision(engine))
        command.check(alembic_config(engine))

        with engine.begin() as conn:
            new = MetaData()
            records = Table("usage_records", new, autoload_with=engine)
            kept = conn.execute(select(records.c.request_id, records.c.end_user, records.c.tags))
            assert sorted(kept) == [(i, None, None) for i in ids]
            flying = Table("calls_in_flight", new, autoload_with=engine)
            assert conn.execute(select(flying.c.request_id, flying.c.tags)).all() == [
                ("flying", None)
            ]
            assert reconcile(conn, window=DayWindow(), now=utcnow()).rollup_problems == []
            by_user = spend_groups(conn, by=("end_user",))
            by_tag = spend_groups(conn, by=("tag",))
            assert [(g["end_user"], g["requests"]) for g in by_user] == [(None, 3)]
            assert [(g["tag"], g["requests"]) for g in by_tag] == [(None, 3)]
            tagged = record_for(engine, "r-new", at, key)._replace(
                end_user="user-1", end_user_scope=f"key:{key}", tags="beta"
            )
            assert write_records(conn, [tagged]) == ["r-new"]
            assert reconcile(conn, window=DayWindow(), now=utcnow()).rollup_problems == []
            by_tag = spend_groups(conn, by=("tag",))
            assert [(g["tag"], g["requests"]) for g in by_tag] == [(None, 3), ("beta", 1)]
    finally:
        engine.dispose()
