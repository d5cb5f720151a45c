"""CLI tests for `metering budgets set|list` (CliRunner, real SQLite and PostgreSQL)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import Engine

from metering.cli import main
from tests.helpers import assert_budgets_consistent, make_org

JSON_FIELDS = [
    "owner_type",
    "owner",
    "limit",
    "period",
    "timezone",
    "spent",
    "reserved",
    "remaining",
    "period_start",
    "next_reset",
    "soft_limit_crossed",
    "forecast",
    "limit_reached_on",
    "daily_rate",
    "forecast_basis",
    "model",
    "scope",
]


def run(db_url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--database-url", db_url, *args])
    return result.exit_code, result.stdout, result.stderr


def test_set_by_name_or_id_and_list_as_json(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        org = make_org(conn)
    code, out, err = run(db_url, "budgets", "set", "--key", "alice", "--limit", "12.50",
                         "--period", "monthly", "--soft", "80", "--format", "json")  # fmt: skip
    assert (code, err) == (0, "")
    (row,) = json.loads(out)
    assert list(row) == JSON_FIELDS
    assert (row["owner_type"], row["owner"], row["limit"], row["spent"]) == (
        "key",
        "alice",
        "12.5",
        "0",
    )
    assert row["period_start"].endswith("-01T00:00:00Z")
    code, _, _ = run(db_url, "budgets", "set", "--team", str(org.team_id), "--limit", "100",
                     "--period", "weekly", "--timezone", "Europe/Berlin")  # fmt: skip
    assert code == 0
    code, _, _ = run(db_url, "budgets", "set", "--customer", "acme", "--limit", "0.000000001",
                     "--period", "never")  # fmt: skip
    assert code == 0
    code, out, _ = run(db_url, "budgets", "list", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    fields = ("owner_type", "owner", "limit", "period", "timezone")
    assert [tuple(r[f] for f in fields) for r in rows] == [
        ("key", "alice", "12.5", "monthly", "UTC"),
        ("team", "search", "100", "weekly", "Europe/Berlin"),
        ("customer", "acme", "0.000000001", "never", "UTC"),
    ]
    assert rows[2]["next_reset"] is None
    assert all(r["soft_limit_crossed"] is False and r["reserved"] == "0" for r in rows)
    assert_budgets_consistent(engine)


def test_set_again_changes_the_budget(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        make_org(conn)
    run(db_url, "budgets", "set", "--key", "bob", "--limit", "5", "--period", "daily")
    code, out, _ = run(db_url, "budgets", "set", "--key", "bob", "--limit", "7", "--period",
                       "12h", "--format", "csv")  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == ",".join(JSON_FIELDS)
    assert lines[1].startswith("key,bob,7,12h,UTC,0,0,7,")
    code, out, _ = run(db_url, "budgets", "list", "--format", "json")
    assert len(json.loads(out)) == 1
    assert_budgets_consistent(engine)


def test_list_table_and_empty(db_url: str, engine: Engine) -> None:
    code, out, _ = run(db_url, "budgets", "list")
    assert (code, out) == (0, "(no rows)\n")
    with engine.begin() as conn:
        make_org(conn)
    run(db_url, "budgets", "set", "--key", "alice", "--limit", "3", "--period", "yearly")
    code, out, _ = run(db_url, "budgets", "list")
    assert code == 0
    header, _rule, line = out.splitlines()
    assert header.split() == JSON_FIELDS
    assert line.split()[:8] == ["key", "alice", "3", "yearly", "UTC", "0", "0", "3"]


def test_errors_are_one_line(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        make_org(conn)
    cases = [
        (["--limit", "5", "--period", "daily"], "exactly one budget owner"),
        (["--key", "alice", "--team", "search", "--limit", "5", "--period", "daily"],
         "exactly one budget owner"),
        (["--key", "nobody", "--limit", "5", "--period", "daily"], "no virtual key named"),
        (["--team", "nobody", "--limit", "5", "--period", "daily"], "no team named 'nobody'"),
        (["--customer", "99", "--limit", "5", "--period", "daily"], "no customer named '99'"),
        (["--key", "alice", "--limit", "-5", "--period", "daily"], "negative"),
        (["--key", "alice", "--limit", "five", "--period", "daily"], "not a decimal"),
        (["--key", "alice", "--limit", "5", "--period", "fortnightly"], "unknown budget period"),
        (["--key", "alice", "--limit", "5", "--period", "0d"], "unknown budget period"),
        (["--key", "alice", "--limit", "5", "--period", "daily", "--timezone", "Mars/Base"],
         "unknown time zone"),
    ]  # fmt: skip
    for args, message in cases:
        code, out, err = run(db_url, "budgets", "set", *args)
        assert code == 1, args
        assert out == ""
        assert err.count("\n") == 1 and message in err, (args, err)
    code, _, err = run(db_url, "budgets", "set", "--key", "alice", "--limit", "5",
                       "--period", "daily", "--soft", "0")  # fmt: skip
    assert code == 2 and "--soft" in err
    code, out, _ = run(db_url, "budgets", "list", "--format", "json")
    assert json.loads(out) == []


def test_a_zero_limit_needs_allow_zero(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        make_org(conn)
    for zero in ("0", "0.000000000"):
        code, out, err = run(db_url, "budgets", "set", "--key", "alice", "--limit", zero,
                             "--period", "monthly")  # fmt: skip
        assert (code, out) == (1, "")
        assert err == (
            f"Error: --limit {zero} would block every priced request; add --allow-zero to set "
            "a zero limit on purpose, or give a positive amount\n"
        )
    code, out, err = run(db_url, "keys", "create", "frozen", "--budget", "0", "--period", "daily")
    assert (code, out) == (1, "")
    assert err.startswith("Error: --budget 0 would block every priced request; add --allow-zero")
    assert run(db_url, "budgets", "list", "--format", "json")[1] == "[]\n"
    assert run(db_url, "keys", "list", "--format", "json")[1].count('"name"') == 2  # no frozen
    code, out, err = run(db_url, "budgets", "set", "--key", "alice", "--limit", "0", "--period",
                         "monthly", "--allow-zero", "--format", "csv")  # fmt: skip
    assert (code, err) == (0, "")
    assert out.splitlines()[1].startswith("key,alice,0,monthly,UTC,0,0,0,")
    code, _, err = run(db_url, "keys", "create", "frozen", "--budget", "0", "--period", "daily",
                       "--allow-zero")  # fmt: skip
    assert code == 0
    assert len(json.loads(run(db_url, "budgets", "list", "--format", "json")[1])) == 2


def test_exponents_and_sub_nano_limits_are_one_line(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        make_org(conn)
    for limit, line in (
        ("1e3", "Error: limit '1e3': write the amount as a plain decimal (e.g. 1000)\n"),
        ("0.0000000001", "Error: limit '0.0000000001' is finer than the nano-dollar "
                         "(9 decimal places)\n"),
    ):  # fmt: skip
        code, out, err = run(db_url, "budgets", "set", "--key", "alice", "--limit", limit,
                             "--period", "monthly")  # fmt: skip
        assert (code, out, err) == (1, "", line)
    assert run(db_url, "budgets", "list", "--format", "json")[1] == "[]\n"


def test_remove_a_budget_refused_while_requests_hold_reservations(
    db_url: str, engine: Engine
) -> None:
    from datetime import UTC, datetime

    from metering.storage.budgets import release, reserve

    with engine.begin() as conn:
        org = make_org(conn)
    assert run(db_url, "budgets", "set", "--team", "search", "--limit", "10", "--period",
               "monthly")[0] == 0  # fmt: skip
    now = datetime.now(UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        reserve(conn, request_id="r1", key_id=org.key_id, team_id=org.team_id,
                customer_id=org.customer_id, amount_nano=1_500_000_000, now=now,
                ttl_seconds=300)  # fmt: skip
    code, out, err = run(db_url, "budgets", "remove", "--team", "search")
    assert (code, out) == (1, "")
    assert err == (
        "Error: the budget of team 'search' has 1.5 USD reserved by 1 request(s) in flight; "
        "remove it once they have settled (try again in a minute)\n"
    )
    with engine.begin() as conn:
        release(conn, request_id="r1", now=now)
    assert run(db_url, "budgets", "remove", "--team", "search") == (
        0,
        "removed the budget of team 'search'\n",
        "",
    )
    assert run(db_url, "budgets", "list", "--format", "json")[1] == "[]\n"
    code, _, err = run(db_url, "budgets", "remove", "--team", "search")
    assert (code, err) == (1, "Error: team 'search' has no budget (see metering budgets list)\n")
    code, _, err = run(db_url, "budgets", "remove", "--key", "alice", "--team", "search")
    assert code == 1 and "exactly one budget owner" in err


def test_model_budgets_set_list_and_remove(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        make_org(conn)
    for args in (("--limit", "10"), ("--model", "openai/gpt-4o*", "--limit", "2")):
        code, _, err = run(db_url, "budgets", "set", "--key", "alice", *args,
                           "--period", "monthly")  # fmt: skip
        assert (code, err) == (0, "")
    code, out, _ = run(db_url, "budgets", "list", "--format", "json")
    assert [(r["owner"], r["model"], r["limit"]) for r in json.loads(out)] == [
        ("alice", None, "10"),
        ("alice", "openai/gpt-4o*", "2"),
    ]
    code, out, err = run(db_url, "budgets", "set", "--key", "alice", "--model", "gpt-4o",
                         "--limit", "1", "--period", "monthly")  # fmt: skip
    assert code == 1 and "--model 'gpt-4o' has no provider" in err
    code, out, err = run(db_url, "budgets", "remove", "--key", "alice", "--model", "openai/*")
    assert code == 1 and "key 'alice' for models 'openai/*' has no budget" in err
    code, out, err = run(db_url, "budgets", "remove", "--key", "alice", "--model",
                         "openai/gpt-4o*")  # fmt: skip
    assert (code, out) == (0, "removed the budget of key 'alice' for models 'openai/gpt-4o*'\n")
    code, out, _ = run(db_url, "budgets", "list", "--format", "json")
    assert [(r["owner"], r["model"]) for r in json.loads(out)] == [("alice", None)]
    assert_budgets_consistent(engine)


def test_end_user_tag_and_default_budgets_set_list_and_remove(db_url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        make_org(conn)
    for owner in (("--tag", "feature=rag"), ("--end-user", "u-1", "--customer", "acme"),
                  ("--each-end-user", "--customer", "acme")):  # fmt: skip
        code, _, err = run(db_url, "budgets", "set", *owner, "--limit", "5", "--period", "monthly")
        assert (code, err) == (0, "")
    code, out, _ = run(db_url, "budgets", "list", "--format", "json")
    assert [(r["owner_type"], r["owner"], r["scope"]) for r in json.loads(out)] == [
        ("end_user", "u-1", "customer 'acme'"),
        ("tag", "feature=rag", None),
        ("each_end_user", "each end user", "customer 'acme'"),
    ]
    for owner in (("--end-user", "u-1"), ("--end-user", "u-1", "--team", "search"),
                  ("--tag", "x", "--key", "alice"), ("--each-end-user",)):  # fmt: skip
        code, _, err = run(db_url, "budgets", "set", *owner, "--limit", "5", "--period", "monthly")
        assert code == 1 and "name exactly one budget owner" in err, owner
    code, out, _ = run(db_url, "budgets", "remove", "--end-user", "u-1", "--customer", "acme")
    assert (code, out) == (0, "removed the budget of end user 'u-1' of customer 'acme'\n")
    code, out, _ = run(db_url, "budgets", "remove", "--each-end-user", "--customer", "acme")
    assert (code, out) == (0, "removed the budget of each end user of customer 'acme'\n")
    code, out, err = run(db_url, "budgets", "remove", "--tag", "beta")
    assert code == 1 and "tag 'beta' has no budget" in err
    code, out, _ = run(db_url, "budgets", "list", "--format", "json")
    assert [r["owner"] for r in json.loads(out)] == ["feature=rag"]
    assert_budgets_consistent(engine)
