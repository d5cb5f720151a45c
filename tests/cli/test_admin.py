"""``metering admin tokens``, ``metering audit``, ``keys update``, ``teams`` and
``customers``: what they print, what they store, the audit rows they write."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, select

from metering.cli import main
from metering.storage.admin_tokens import SCOPES, authenticate_token
from metering.storage.models import AdminToken


def run(db_url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--database-url", db_url, *args])
    return result.exit_code, result.stdout, result.stderr


def test_tokens_create_list_revoke(db_url: str, engine: Engine) -> None:
    code, out, err = run(db_url, "admin", "tokens", "create", "ops", "--format", "json")
    assert (code, err) == (0, "")
    created = json.loads(out)
    assert list(created) == ["id", "name", "token"] and created["name"] == "ops"
    secret = created["token"]
    assert secret.startswith("sk-adm-") and len(secret) > 40
    with engine.connect() as conn:
        stored = conn.execute(select(AdminToken.token_hash, AdminToken.scopes)).one()
        assert secret not in stored[0] and len(stored[0]) == 64  # only its hash
        assert tuple(stored[1].split(",")) == SCOPES  # every scope by default
        token = authenticate_token(conn, secret)
        assert token is not None and token.revoked_at is None
    code, out, _ = run(db_url, "admin", "tokens", "create", "ro", "--scope", "keys:read",
                       "--scope", "audit:read")  # fmt: skip
    assert code == 0 and "keys:read, audit:read" in out
    code, _, err = run(db_url, "admin", "tokens", "create", "x", "--scope", "keys:destroy")
    assert code == 2 and "keys:destroy" in err
    assert run(db_url, "admin", "tokens", "create", "ops")[0] == 1  # a taken name
    assert run(db_url, "admin", "tokens", "create", "cli")[0] == 1  # the CLI's audit actor
    code, out, _ = run(db_url, "admin", "tokens", "revoke", "ro")
    assert (code, out) == (0, "admin token 'ro' (id 2) is revoked\n")
    code, out, _ = run(db_url, "admin", "tokens", "list", "--format", "json")
    listed = {t["name"]: t for t in json.loads(out)}
    assert (listed["ops"]["status"], listed["ro"]["status"]) == ("active", "revoked")
    assert listed["ro"]["scopes"] == ["keys:read", "audit:read"]
    assert secret not in out
    code, out, err = run(db_url, "admin", "tokens", "revoke", "nobody")
    assert code == 1 and "no admin token named 'nobody'" in err


def test_keys_update_and_its_audit_row(db_url: str) -> None:
    assert run(db_url, "keys", "create", "app", "--rpm", "5", "--models", "openai/*")[0] == 0
    code, out, err = run(db_url, "keys", "update", "app", "--rpm", "none", "--tpm", "900",
                         "--team", "ml", "--expires", "2099-01-01", "--format", "json")  # fmt: skip
    assert (code, err) == (0, "")
    (row,) = json.loads(out)
    assert (row["rpm"], row["tpm"], row["team"], row["models"], row["expires_at"]) == (
        None, 900, "ml", ["openai/*"], "2099-01-01T00:00:00Z")  # fmt: skip
    code, out, _ = run(db_url, "keys", "update", "app", "--models", "none", "--format", "json")
    assert json.loads(out)[0]["models"] == []
    for bad, message in (
        (["--rpm", "0"], "--rpm must be a positive whole number"),
        (["--rpm", "ten"], "--rpm 'ten' is not a whole number"),
        (["--models", "gpt-4o"], "has no provider"),
        (["--expires", "2001-01-01"], "is in the past"),
        ([], "nothing to update"),
    ):
        code, _, err = run(db_url, "keys", "update", "app", *bad)
        assert code == 1 and message in err, (bad, err)
    code, out, _ = run(db_url, "audit", "--action", "key.update", "--format", "json")
    updates = json.loads(out)
    assert len(updates) == 2  # the refused updates wrote nothing
    newest, first = updates
    assert (first["actor"], first["target"]) == ("cli", "key:app")
    assert (first["before"]["rpm"], first["after"]["rpm"]) == (5, None)
    assert (newest["before"]["models"], newest["after"]["models"]) == (["openai/*"], [])


def test_keys_update_replaces_and_clears_default_tags(db_url: str) -> None:
    """``keys update --tag`` replaces the key's default tags (audited before → after),
    ``--tag none`` removes them, a bad tag is refused and changes nothing."""
    assert run(db_url, "keys", "create", "tagged", "--tag", "feature=rag")[0] == 0
    code, out, err = run(db_url, "keys", "update", "tagged", "--tag", "beta", "--tag",
                         "team=web", "--format", "json")  # fmt: skip
    assert (code, err) == (0, "")
    assert sorted(json.loads(out)[0]["tags"]) == ["beta", "team=web"]
    code, _, err = run(db_url, "keys", "update", "tagged", "--tag", "bad\x00tag")
    assert code == 1 and "tag" in err
    code, out, _ = run(db_url, "keys", "show", "tagged", "--format", "json")
    assert sorted(json.loads(out)[0]["tags"]) == ["beta", "team=web"]  # unchanged
    code, out, _ = run(db_url, "keys", "update", "tagged", "--tag", "none", "--format", "json")
    assert (code, json.loads(out)[0]["tags"]) == (0, [])
    code, out, _ = run(db_url, "audit", "--action", "key.update", "--format", "json")
    cleared, replaced = json.loads(out)
    assert (replaced["before"]["tags"], sorted(replaced["after"]["tags"])) == (
        ["feature=rag"], ["beta", "team=web"])  # fmt: skip
    assert cleared["after"]["tags"] == []


def test_teams_customers_and_audit_formats(db_url: str) -> None:
    code, out, _ = run(db_url, "customers", "create", "acme", "--format", "json")
    assert code == 0 and json.loads(out)[0]["name"] == "acme"
    code, out, _ = run(db_url, "teams", "create", "ml", "--customer", "acme", "--format", "json")
    assert json.loads(out)[0]["customer"] == "acme"
    assert run(db_url, "teams", "create", "ml")[0] == 1
    assert run(db_url, "teams", "create", "42")[0] == 1  # would read as an id
    code, _, err = run(db_url, "teams", "create", "new", "--customer", "nobody")
    assert code == 1 and "no customer named 'nobody'" in err
    code, out, _ = run(db_url, "teams", "list", "--format", "csv")
    assert out.splitlines()[0] == "id,name,customer,keys,created_at"
    code, out, _ = run(db_url, "customers", "list", "--format", "json")
    assert [(c["name"], c["teams"]) for c in json.loads(out)] == [("acme", 1)]
    code, out, _ = run(db_url, "audit", "--format", "csv")
    lines = out.splitlines()
    assert lines[0] == "id,at,actor,action,target,before,after"
    assert [line.split(",")[3] for line in lines[1:]] == ["team.create", "customer.create"]
    code, out, _ = run(db_url, "audit")
    assert code == 0 and "team.create" in out.splitlines()[2]
    code, out, _ = run(db_url, "audit", "--actor", "someone")
    assert out == "(no rows)\n"


def test_alerts_add_and_remove_are_audited_without_their_secret(db_url: str) -> None:
    assert run(db_url, "keys", "create", "app", "--budget", "5", "--period", "monthly")[0] == 0
    code, out, _ = run(db_url, "alerts", "add", "--url", "http://127.0.0.1:9/hook", "--key",
                       "app", "--secret", "s3cret-value", "--format", "json")  # fmt: skip
    alert_id = json.loads(out)["id"]
    assert run(db_url, "alerts", "remove", str(alert_id))[0] == 0
    code, out, _ = run(db_url, "audit", "--format", "json")
    assert code == 0
    removed, added = json.loads(out)[:2]
    assert (added["action"], added["target"], added["after"]["url"]) == (
        "alert.add", f"alert:{alert_id}", "http://127.0.0.1:9/hook")  # fmt: skip
    assert (removed["action"], removed["before"], removed["after"]) == (
        "alert.remove", added["after"], None)  # fmt: skip
    assert "s3cret-value" not in out


def test_db_upgrade_ingest_and_reprice_write_audit_rows(tmp_path: Path) -> None:
    """The CLI's data changes are audited too: a schema upgrade (revisions before →
    after), an ingest (what it added) and a reprice run (old → new totals, its run id);
    a dry run, a no-op upgrade and an ingest that adds nothing write none."""
    from tests.cli.test_ingest import USAGE
    from tests.reports.factory import completion_response

    url = f"sqlite:///{tmp_path / 'audited.db'}"
    assert run(url, "db", "upgrade")[0] == 0
    assert run(url, "db", "upgrade")[0] == 0  # already there: nothing to audit
    assert run(url, "keys", "create", "alice")[0] == 0
    line = {"key": "alice", "timestamp": "2026-11-03T12:00:00Z",
            "response": completion_response("x/m", USAGE)}  # fmt: skip
    path = tmp_path / "backfill.jsonl"
    path.write_text(json.dumps(line) + "\n")
    assert run(url, "ingest", str(path))[0] == 0
    assert run(url, "ingest", str(path))[0] == 0  # a duplicate: nothing added
    sheet = tmp_path / "x.toml"
    sheet.write_text('provider = "x"\neffective_from = "2026-01-01"\n'
                     '[models.m]\ninput = "1"\noutput = "2"\n')  # fmt: skip
    assert run(url, "prices", "import", str(sheet))[0] == 0
    assert run(url, "reprice", "--dry-run")[0] == 0
    assert run(url, "reprice")[0] == 0
    code, out, _ = run(url, "audit", "--format", "json", "--limit", "100")
    assert code == 0
    rows = [r for r in json.loads(out) if r["action"] in ("db.upgrade", "records.ingest",
                                                           "records.reprice")]  # fmt: skip
    assert [r["action"] for r in rows] == ["records.reprice", "records.ingest", "db.upgrade"]
    reprice, ingest, upgrade = rows
    assert all(r["actor"] == "cli" for r in rows)
    assert upgrade["before"] == {"revision": None}
    assert upgrade["after"]["revision"] and upgrade["after"]["price_versions_added"] > 0
    assert (ingest["target"], ingest["after"]) == (
        "file:backfill.jsonl", {"ingested": 1, "duplicate": 0, "bad": 0})  # fmt: skip
    assert reprice["before"]["records"] == reprice["after"]["records"] == 1
    assert reprice["before"]["total_cost"] == "0"  # it was unpriced
    assert reprice["after"]["total_cost"] != "0" and reprice["after"]["newly_priced"] == 1
