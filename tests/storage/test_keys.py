"""Virtual keys in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from metering.errors import Conflict, InvalidInput, NotFound
from metering.storage.keys import (
    authenticate,
    create_key,
    find_key,
    hash_secret,
    list_keys,
    set_key_enabled,
    set_key_expiry,
)
from metering.storage.models import Team, VirtualKey


def test_secret_is_shown_once_and_only_its_hash_is_stored(engine: Engine) -> None:
    with engine.begin() as conn:
        created = create_key(conn, name="app")
        stored = conn.execute(select(VirtualKey.__table__)).one()._mapping
    assert created.secret.startswith("sk-bf-") and len(created.secret) >= 6 + 32
    assert stored["key_hash"] == hash_secret(created.secret)
    assert created.secret not in str(dict(stored))
    assert stored["key_prefix"] == created.secret[:10] + "…"


def test_teams_and_customers_are_created_on_demand(engine: Engine) -> None:
    with engine.begin() as conn:
        first = create_key(conn, name="a", team="ml", customer="acme").info
        second = create_key(conn, name="b", team="ml").info
        assert conn.execute(select(Team.customer_id).where(Team.name == "ml")).scalar() == (
            first.customer_id
        )
    assert (first.team, first.customer) == ("ml", "acme")
    assert (second.team_id, second.customer) == (first.team_id, "acme")  # the team's customer


def test_a_team_cannot_change_customer(engine: Engine) -> None:
    with engine.begin() as conn:
        create_key(conn, name="a", team="ml", customer="acme")
        with pytest.raises(Conflict):
            create_key(conn, name="b", team="ml", customer="globex")


def test_find_by_name_or_id(engine: Engine) -> None:
    with engine.begin() as conn:
        key = create_key(conn, name="app", rpm_limit=5, allowed_models=["openai/*"]).info
        assert find_key(conn, "app") == key
        assert find_key(conn, str(key.id)) == key
        assert find_key(conn, key.id).allowed_models == ("openai/*",)
        with pytest.raises(NotFound):
            find_key(conn, "nope")


def test_names_are_unique_and_not_numbers(engine: Engine) -> None:
    with engine.begin() as conn:
        create_key(conn, name="app")
        with pytest.raises(Conflict):
            create_key(conn, name="app")
        with pytest.raises(InvalidInput):
            create_key(conn, name="123")
        assert [k.name for k in list_keys(conn)] == ["app"]


def test_disable_enable_expiry_and_authenticate(engine: Engine) -> None:
    now = datetime(2025, 6, 1)
    with engine.begin() as conn:
        created = create_key(conn, name="app")
        assert authenticate(conn, created.secret) == created.info
        assert authenticate(conn, "sk-bf-wrong") is None
        assert set_key_enabled(conn, "app", enabled=False).blocked_reason(now)
        info = set_key_enabled(conn, "app", enabled=True)
        assert info.blocked_reason(now) is None
        info = set_key_expiry(conn, "app", expires_at=now - timedelta(seconds=1))
        assert "expired" in (info.blocked_reason(now) or "")
        assert authenticate(conn, created.secret) == info  # found; the gateway refuses it


def test_key_creation_rolls_back_with_its_transaction(engine: Engine) -> None:
    """A key created in a transaction that fails later is not left behind (no savepoint leak)."""
    with pytest.raises(RuntimeError), engine.begin() as conn:
        create_key(conn, name="ephemeral")  # no new team: nothing else began the transaction
        raise RuntimeError("something later in the same transaction failed")
    with engine.connect() as conn, pytest.raises(NotFound):
        find_key(conn, "ephemeral")


def test_names_with_control_characters_are_refused_and_never_found(engine: Engine) -> None:
    """On PostgreSQL a NUL cannot even be compared: refused before any SQL."""
    with engine.begin() as conn:
        for name, team in (("a\x00b", None), ("ok", "t\x1b"), ("ok2", None)):
            if name == "ok2":
                create_key(conn, name=name, customer="c")
                continue
            with pytest.raises(InvalidInput, match="control characters"):
                create_key(conn, name=name, team=team)
        with pytest.raises(NotFound, match="control characters"):
            find_key(conn, "ok2\x00")
        assert [k.name for k in list_keys(conn)] == ["ok2"]
