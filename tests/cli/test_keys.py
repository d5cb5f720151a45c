"""``metering keys`` through click's CliRunner."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import Engine

from metering.cli import main
from metering.storage.keys import authenticate


def run(db_url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--database-url", db_url, *args])
    return result.exit_code, result.output


def test_create_json_prints_the_secret_once(db_url: str, engine: Engine) -> None:
    code, out = run(
        db_url, "keys", "create", "app", "--team", "ml", "--customer", "acme",
        "--models", "openai/*", "--models", "anthropic/*", "--rpm", "60", "--tpm", "1000",
        "--expires", "2999-01-01", "--format", "json",
    )  # fmt: skip
    assert code == 0, out
    created = json.loads(out)
    assert set(created) == {"id", "name", "key"}
    assert created["name"] == "app" and created["key"].startswith("sk-bf-")
    with engine.connect() as conn:
        info = authenticate(conn, created["key"])
    assert info is not None and info.id == created["id"]
    assert info.allowed_models == ("openai/*", "anthropic/*")
    assert (info.rpm_limit, info.tpm_limit, info.team, info.customer) == (60, 1000, "ml", "acme")

    code, listing = run(db_url, "keys", "list", "--format", "json")
    assert code == 0
    [row] = json.loads(listing)
    assert row["name"] == "app" and row["status"] == "active"
    assert created["key"] not in listing


def test_show_disable_enable_by_name_or_id(db_url: str) -> None:
    code, out = run(db_url, "keys", "create", "app")
    assert code == 0 and "sk-bf-" in out
    code, out = run(db_url, "keys", "disable", "app")
    assert (code, out.strip()) == (0, "virtual key 'app' (id 1) is disabled")
    code, out = run(db_url, "keys", "show", "1", "--format", "json")
    assert json.loads(out)[0]["status"] == "disabled"
    code, out = run(db_url, "keys", "enable", "1")
    assert "is active" in out
    code, out = run(db_url, "keys", "show", "app")
    assert code == 0 and "status" in out and "active" in out


def test_errors_are_one_line_and_non_zero(db_url: str) -> None:
    run(db_url, "keys", "create", "app")
    code, out = run(db_url, "keys", "create", "app")
    assert code == 1 and "already exists" in out
    code, out = run(db_url, "keys", "show", "missing")
    assert code == 1 and "no virtual key named 'missing'" in out
    code, out = run(db_url, "keys", "create", "other", "--expires", "tomorrow")
    assert code == 1 and "--expires" in out


def test_create_with_a_budget_sets_the_keys_own_budget(db_url: str) -> None:
    code, out = run(
        db_url,
        "keys",
        "create",
        "capped",
        "--team",
        "ml",
        "--budget",
        "12.50",
        "--period",
        "weekly",
        "--soft",
        "80",
        "--timezone",
        "Europe/Paris",
        "--rpm",
        "60",
        "--format",
        "json",
    )
    assert code == 0, out
    assert json.loads(out)["name"] == "capped"
    code, out = run(db_url, "budgets", "list", "--format", "json")
    assert code == 0, out
    [budget] = json.loads(out)
    assert (budget["owner_type"], budget["owner"]) == ("key", "capped")
    assert (budget["limit"], budget["period"], budget["timezone"]) == (
        "12.5",
        "weekly",
        "Europe/Paris",
    )
    assert (budget["spent"], budget["reserved"], budget["remaining"]) == ("0", "0", "12.5")
    code, out = run(db_url, "keys", "show", "capped", "--format", "json")
    assert json.loads(out)[0]["rpm"] == 60


def test_create_budget_options_are_checked_before_anything_is_created(db_url: str) -> None:
    code, out = run(db_url, "keys", "create", "half", "--budget", "5")
    assert code == 1 and "--budget and --period go together" in out
    code, out = run(db_url, "keys", "create", "soft", "--soft", "50")
    assert code == 1 and "add --budget and --period" in out
    code, out = run(db_url, "keys", "create", "bad", "--budget", "5", "--period", "fortnightly")
    assert code == 1 and out.count("\n") == 1
    code, out = run(db_url, "keys", "list", "--format", "json")
    assert json.loads(out) == []  # the refused key was rolled back with its budget
