"""``metering keys`` through click's CliRunner."""

from __future__ import annotations

import json
import re

import pytest
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--expires", "2020-01-01"],
            "Error: --expires 2020-01-01 is in the past (now NOW): the key would never work\n",
        ),
        (
            ["--expires", "2026-02-30"],
            "Error: --expires 2026-02-30 does not exist (February 2026 has 28 days)\n",
        ),
        (
            ["--expires", "2027-13-01T00:00:00Z"],
            "Error: --expires 2027-13-01 does not exist (months are 01 to 12)\n",
        ),
        (
            ["--models", "openai/*", "--models", "gpt-4o"],
            "Error: --models 'gpt-4o' has no provider and would match no request: write "
            "provider/model, e.g. 'openai/gpt-4o' (or '*/gpt-4o' for any provider)\n",
        ),
    ],
)
def test_create_refuses_what_would_never_work(db_url: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["--database-url", db_url, "keys", "create", "app", *args])
    assert (result.exit_code, result.stdout) == (1, "")
    now = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.fullmatch(re.escape(message).replace("NOW", now), result.stderr), result.stderr
    listed = CliRunner().invoke(
        main, ["--database-url", db_url, "keys", "list", "--format", "json"]
    )
    assert listed.output == "[]\n"


def test_create_accepts_wildcard_patterns_and_a_future_expiry(db_url: str) -> None:
    result = CliRunner().invoke(
        main,
        ["--database-url", db_url, "keys", "create", "app", "--models", "*gpt*", "--models",
         "anthropic/*", "--expires", "2999-01-01"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_list_and_show_give_times_in_utc_with_z(db_url: str) -> None:
    code, _ = run(db_url, "keys", "create", "app", "--expires", "2999-01-01T12:30:00+02:00")
    assert code == 0
    code, out = run(db_url, "keys", "list", "--format", "json")
    (row,) = json.loads(out)
    assert row["expires_at"] == "2999-01-01T10:30:00Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["created_at"])
    code, out = run(db_url, "keys", "show", "app")
    assert "expires_at  2999-01-01T10:30:00Z" in out.splitlines()
    code, out = run(db_url, "keys", "list")
    assert "2999-01-01T10:30:00Z" in out.splitlines()[2]


def test_create_with_default_tags_lists_them_and_refuses_bad_ones(db_url: str) -> None:
    code, out = run(db_url, "keys", "create", "tagged", "--tag", "team=search", "--tag", "beta")
    assert code == 0, out
    code, out = run(db_url, "keys", "show", "tagged", "--format", "json")
    assert code == 0, out
    assert json.loads(out)[0]["tags"] == ["beta", "team=search"]
    code, out = run(db_url, "keys", "create", "bad", "--tag", "a,b")
    assert code != 0 and "comma" in out
    code, out = run(db_url, "keys", "show", "bad")
    assert code != 0  # nothing was created
