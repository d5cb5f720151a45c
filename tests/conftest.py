"""Shared fixtures: a fresh, migrated database per test on SQLite and on PostgreSQL.

PostgreSQL: ``METERING_TEST_POSTGRES_URL`` (an admin URL), else the local server at
127.0.0.1:5432 (user postgres, database test) if it answers. The session creates its
own database ``metering_test_<random>`` there and drops it at the end, so runs never
see each other's rows. Without a server the PostgreSQL tests skip with the reason —
unless ``METERING_REQUIRE_POSTGRES=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from metering.storage.database import open_database
from metering.storage.engine import make_engine, normalize_url
from metering.storage.models import Base
from metering.storage.prices import sync_shipped_sheets

DEFAULT_PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_admin_url() -> tuple[str | None, str]:
    url = normalize_url(os.environ.get("METERING_TEST_POSTGRES_URL", DEFAULT_PG_ADMIN))
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "no PostgreSQL here"
        return None, f"no PostgreSQL reachable at {make_url(url).render_as_string()}: {exc}"
    return url, ""


_PG_STATE: dict[str, str | None] = {}


def _pg_database_name() -> str:
    """This run's own database (created by ``pg_url``, dropped at the end)."""
    name = _PG_STATE.get("name")
    if name is None:
        name = _PG_STATE["name"] = f"metering_test_{uuid.uuid4().hex[:10]}"
    return name


def pytest_report_header(config: pytest.Config) -> str:
    url, reason = _pg_admin_url()
    _PG_STATE["admin"] = url
    _PG_STATE["reason"] = reason
    if url is None:
        return f"metering: PostgreSQL tests skipped ({reason})"
    server = make_url(url).render_as_string()
    return f"metering: PostgreSQL tests use database {_pg_database_name()} on {server}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str | None]:
    """URL of a migrated PostgreSQL database private to this test session (None if none)."""
    if "admin" not in _PG_STATE:
        _PG_STATE["admin"], _PG_STATE["reason"] = _pg_admin_url()
    admin = _PG_STATE["admin"]
    if admin is None:
        yield None
        return
    name = _pg_database_name()
    admin_engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    print(f"\nmetering: PostgreSQL tests use database {name}")
    open_database(url).dispose()
    try:
        yield url
    finally:
        with admin_engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "metering.db"
    open_database(f"sqlite:///{path}").dispose()
    return path


def _reset_postgres(url: str) -> None:
    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    sync_shipped_sheets(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, pg_url: str | None
) -> str:
    """A fresh migrated database with the shipped price sheets, on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "metering.db"
        shutil.copy(sqlite_template, path)
        return f"sqlite:///{path}"
    if pg_url is None:
        reason = _PG_STATE.get("reason") or "no PostgreSQL"
        if os.environ.get("METERING_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"METERING_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    _reset_postgres(pg_url)
    return pg_url


@pytest.fixture
def sqlite_engine(tmp_path: Path, sqlite_template: Path) -> Iterator[Engine]:
    """A fresh migrated SQLite database, for what only SQLite has (pragmas, files)."""
    path = tmp_path / "metering-sqlite.db"
    shutil.copy(sqlite_template, path)
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def journal_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's record journal in its own folder (the default for PostgreSQL is the
    working directory, which tests share; servers started by a test inherit it)."""
    path = tmp_path / "journal"
    monkeypatch.setenv("METERING_JOURNAL_DIR", str(path))
    return path
