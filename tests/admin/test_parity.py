"""Each CLI operation and its admin API twin on the same database: the same JSON, the
same stored state, the same audit row (only the actor differs: ``cli`` or the token's
name). Reads are compared whole; a change is made by the CLI on one owner and by the
API on another, then both are read back and compared without their names and ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner

from metering.cli import main
from metering.storage.keys import utcnow
from tests.admin.conftest import Admin

pytestmark = pytest.mark.slow

IDENTITY = frozenset(("id", "name", "prefix", "created_at", "owner", "key"))
SHEET = """provider = "{provider}"
effective_from = "2031-01-01"
[models."m-1"]
input = "1.00"
output = "2.00"
"""


def cli(admin: Admin, *args: str) -> Any:
    result = CliRunner().invoke(main, ["--database-url", str(admin.engine.url.render_as_string(
        hide_password=False)), *args])  # fmt: skip
    assert result.exit_code == 0, (args, result.stderr)
    return json.loads(result.stdout) if "--format" in args else result.stdout


def api(client: httpx2.Client, method: str, path: str, **kwargs: Any) -> Any:
    response = client.request(method, path, **kwargs)
    assert response.status_code < 300, (path, response.text)
    return response.json()


def _strip(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in IDENTITY}


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert _strip(a) == _strip(b)


def _last_audit(admin: Admin, client: httpx2.Client, actor: str) -> dict[str, Any]:
    rows = api(client, "GET", "/audit", params={"actor": actor, "limit": 1})["data"]
    row = rows[0]
    for state in ("before", "after"):
        if isinstance(row[state], dict):
            row[state] = {k: v for k, v in row[state].items() if k not in IDENTITY}
    return {k: v for k, v in row.items() if k not in ("id", "at", "actor", "target")}


def test_cli_and_api_are_one(admin: Admin, tmp_path: Path) -> None:
    auth = {"authorization": f"Bearer {admin.virtual_key}"}
    for model in ("openai/gpt-4o", "openai/o3-mini"):
        body = {"model": model, "prompt": "hi", "max_tokens": 5}
        assert httpx2.post(admin.url + "/v1/completions", json=body, headers=auth).is_success
    month = utcnow().strftime("%Y-%m")
    with admin.client() as client:

        def twin(cli_args: list[str], method: str, path: str, **kwargs: Any) -> None:
            """A change by each, then the same audit row but for who made it."""
            cli(admin, *cli_args)
            by_cli = _last_audit(admin, client, "cli")
            api(client, method, path, **kwargs)
            assert _last_audit(admin, client, "ops") == by_cli, cli_args

        # key create / update / disable / enable: the same changes on key c and key a
        created = cli(admin, "keys", "create", "c", "--team", "ml", "--rpm", "9", "--format",
                      "json")  # fmt: skip
        assert list(created) == ["id", "name", "key"]
        made = api(client, "POST", "/keys", json={"name": "a", "team": "ml", "rpm": 9})
        assert list(made) == list(created)
        twin(["keys", "update", "c", "--tpm", "500", "--models", "openai/*"],
             "PATCH", "/keys/a", json={"tpm": 500, "models": ["openai/*"]})  # fmt: skip
        twin(["keys", "disable", "c"], "POST", "/keys/a/disable")
        twin(["keys", "enable", "c"], "POST", "/keys/a/enable")
        (shown,) = cli(admin, "keys", "show", "c", "--format", "json")
        assert api(client, "GET", "/keys/c") == shown
        _same(shown, api(client, "GET", "/keys/a"))
        assert api(client, "GET", "/keys")["data"] == cli(admin, "keys", "list", "--format", "json")
        # teams and customers
        twin(["customers", "create", "c1"], "POST", "/customers", json={"name": "a1"})
        twin(["teams", "create", "ct", "--customer", "c1"],
             "POST", "/teams", json={"name": "at", "customer": "c1"})  # fmt: skip
        assert api(client, "GET", "/teams")["data"] == cli(admin, "teams", "list", "--format",
                                                           "json")  # fmt: skip
        assert api(client, "GET", "/customers")["data"] == cli(admin, "customers", "list",
                                                               "--format", "json")  # fmt: skip
        # budgets set / list / remove
        twin(["budgets", "set", "--key", "c", "--limit", "7.25", "--period", "weekly",
              "--soft", "80"],
             "POST", "/budgets", json={"owner_type": "key", "owner": "a", "limit": "7.25",
                                       "period": "weekly", "soft": 80})  # fmt: skip
        listed = cli(admin, "budgets", "list", "--format", "json")
        assert api(client, "GET", "/budgets")["data"] == listed
        by_owner = {b["owner"]: b for b in listed}
        _same(by_owner["c"], by_owner["a"])
        twin(["budgets", "remove", "--key", "c"], "DELETE", "/budgets/key/a")
        assert api(client, "GET", "/budgets")["data"] == []
        # spend, export, reconcile
        for by in ("key", "provider,model", "team,customer,day"):
            assert api(client, "GET", "/spend", params={"by": by})["data"] == cli(
                admin, "spend", "--by", by, "--format", "json")  # fmt: skip
        for detail in ("summary", "requests"):
            out = tmp_path / f"{detail}.csv"
            cli(admin, "export", "--month", month, "--detail", detail, "--out", str(out))
            streamed = client.get(f"/exports/{month}", params={"detail": detail})
            assert streamed.content == out.read_bytes()
        assert api(client, "GET", "/reconcile") == cli(admin, "reconcile", "--format", "json")
        # prices: import (a sheet each), list, show, quote
        (tmp_path / "c.toml").write_text(SHEET.format(provider="cprov"))
        outcomes = cli(admin, "prices", "import", str(tmp_path / "c.toml"), "--format", "json")
        by_cli = _last_audit(admin, client, "cli")
        imported = api(
            client,
            "POST",
            "/prices/import",
            json={"filename": "c.toml", "content": SHEET.format(provider="aprov")},
        )
        assert imported["outcomes"] == outcomes and outcomes[0]["count"] == 1
        by_api = _last_audit(admin, client, "ops")
        assert by_api["after"]["versions"] == ["aprov/m-1@2031-01-01"]
        assert by_cli["after"]["versions"] == ["cprov/m-1@2031-01-01"]
        assert by_api["action"] == by_cli["action"] == "prices.import"
        assert api(client, "GET", "/prices", params={"at": "2031-02-01"})["data"] == cli(
            admin, "prices", "list", "--at", "2031-02-01", "--format", "json")  # fmt: skip
        assert api(client, "GET", "/prices/versions", params={"model": "cprov/m-1"})["data"] == (
            cli(admin, "prices", "show", "cprov/m-1", "--format", "json"))  # fmt: skip
        quoted = api(client, "GET", "/prices/quote", params={
            "model": "openai/gpt-4o", "prompt_tokens": 1000, "cached_read_tokens": 200,
            "completion_tokens": 500})  # fmt: skip
        assert quoted["components"] == cli(admin, "prices", "quote", "openai/gpt-4o",
                                           "--prompt-tokens", "1000", "--cached-read-tokens",
                                           "200", "--completion-tokens", "500", "--format",
                                           "json")  # fmt: skip
        # the audit log itself
        assert api(client, "GET", "/audit", params={"limit": 50})["data"] == cli(
            admin, "audit", "--limit", "50", "--format", "json")  # fmt: skip
