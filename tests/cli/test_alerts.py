"""CLI tests for `metering alerts add|list|remove|test|history` (CliRunner, real SQLite
and PostgreSQL, a real receiver on loopback).

The commands run under a ``MeteringGroup`` of their own with ``main``'s options (the
group ``metering`` registers them in; errors become one line and exit 1 there)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from metering.cli import MeteringGroup, main
from metering.cli.alerts import alerts
from metering.storage.keys import utcnow
from tests.alert_receiver import Receiver
from tests.helpers import Org, make_org
from tests.storage.budgeting import set_
from tests.storage.test_alerts import spend

CLI = MeteringGroup(name="metering", params=main.params, callback=main.callback,
                    commands={"alerts": alerts})  # fmt: skip


def run(db_url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(CLI, ["--database-url", db_url, "alerts", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def org(engine: Engine) -> Org:
    with engine.begin() as conn:
        org = make_org(conn)
    set_(engine, "team", org.team_id, 10, "monthly", now=utcnow())
    return org


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver().start()
    try:
        yield got
    finally:
        got.stop()


def test_add_list_remove(db_url: str, org: Org) -> None:
    code, out, err = run(db_url, "add", "--url", "https://hooks.example/a", "--team", "search",
                         "--secret", "s", "--format", "json")  # fmt: skip
    assert (code, err, json.loads(out)) == (0, "", {"id": 1})
    code, out, _ = run(db_url, "add", "--url", "http://127.0.0.1:9/b", "--team",
                       str(org.team_id), "--at", "80", "--payload", "slack")  # fmt: skip
    assert code == 0
    first, second = out.splitlines()
    assert first == "alert 2: team 'search''s budget at 80 % → http://127.0.0.1:9/b (slack)"
    assert second.startswith("signing secret (shown once): whsec_")
    code, out, _ = run(db_url, "add", "--url", "http://x/", "--team", "search", "--forecast",
                       "--format", "json")  # fmt: skip
    shown = json.loads(out)
    assert list(shown) == ["id", "secret"] and shown["secret"].startswith("whsec_")
    code, out, _ = run(db_url, "list", "--format", "json")
    rows = json.loads(out)
    assert [(r["id"], r["owner"], r["at"], r["payload"], r["forecast"]) for r in rows] == [
        (1, "search", "50,80,100", "json", False),
        (2, "search", "80", "slack", False),
        (3, "search", "50,80,100", "json", True),
    ]
    assert all("secret" not in r for r in rows) and shown["secret"] not in out
    assert run(db_url, "remove", "1") == (0, "removed alert 1\n", "")
    code, out, _ = run(db_url, "list")
    assert code == 0 and out.splitlines()[0].split() == [
        "id", "owner_type", "owner", "url", "at", "payload", "forecast", "created_at"
    ]  # fmt: skip
    assert len(out.splitlines()) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "http://x/"], "name exactly one budget owner"),
        (["--url", "http://x/", "--team", "search", "--key", "alice"], "exactly one"),
        (["--url", "http://x/", "--key", "alice"], "metering budgets set"),
        (["--url", "http://x/", "--team", "nobody"], "no team named 'nobody'"),
        (["--url", "mailto:x", "--team", "search"], "http:// or https://"),
        (["--url", "http://x/", "--team", "search", "--at", "50,120"], "from 1 to 100"),
    ],
)
def test_add_refuses_with_one_line(db_url: str, org: Org, args: list[str], message: str) -> None:
    code, out, err = run(db_url, "add", *args)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_unknown_alert_is_one_line(db_url: str, org: Org) -> None:
    for command in ("remove", "test", "history"):
        code, _, err = run(db_url, command, "7")
        assert code == 1 and err.strip() == "Error: no alert 7 (see metering alerts list)"


def test_test_sends_now_and_history_shows_it(
    db_url: str, engine: Engine, org: Org, receiver: Receiver
) -> None:
    code, out, _ = run(db_url, "add", "--url", receiver.url, "--team", "search", "--secret",
                       "k", "--format", "json")  # fmt: skip
    alert_id = json.loads(out)["id"]
    spend(engine, org, "r", 6 * 10**9, at=utcnow())  # 60 %: crosses 50 (sent by serve)
    code, out, err = run(db_url, "test", str(alert_id))
    assert (code, err) == (0, "")
    (got,) = receiver.wait_for(1)  # only the test event: the CLI sends nothing else
    assert out == f"delivered test event {got.event_id} (HTTP 200)\n"
    assert got.signed_with("k") and got.json["type"] == "budget.test"
    assert got.json["spent"] == "6" and got.json["limit"] == "10"
    code, out, _ = run(db_url, "history", str(alert_id), "--format", "json")
    rows = json.loads(out)
    assert [(r["kind"], r["threshold"], r["status"], r["attempts"]) for r in rows] == [
        ("test", 0, "delivered", 1),
        ("threshold", 50, "pending", 0),
    ]
    code, out, _ = run(db_url, "history", "--format", "csv")
    assert code == 0 and out.splitlines()[0].startswith("alert_id,event_id,kind,threshold")


def test_test_to_a_receiver_that_is_down_fails_with_one_line(db_url: str, org: Org) -> None:
    from tests.process import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"
    code, out, _ = run(db_url, "add", "--url", url, "--team", "search", "--format", "json")
    code, out, err = run(db_url, "test", str(json.loads(out)["id"]))
    assert code == 1 and out == ""
    assert err.startswith("Error: test event ") and "not delivered: ClientConnectorError" in err
    code, out, _ = run(db_url, "history", "--format", "json")
    (row,) = json.loads(out)
    assert (row["status"], row["attempts"]) == ("failed", 1)  # a test is tried once
