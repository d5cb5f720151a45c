"""`metering` imports a command's module only when that command runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from metering.cli import COMMANDS, DEFAULT_DATABASE_URL, main
from metering.config import DEFAULT_DATABASE_URL as SETTINGS_DEFAULT_URL

HEAVY = ("pandas", "numpy", "matplotlib", "alembic", "uvicorn", "aiohttp", "pydantic")


def _imported_after(args: list[str]) -> list[str]:
    """Top-level packages imported by `metering ARGS` in a fresh interpreter."""
    script = (
        "import json, sys\n"
        "from metering.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return list(json.loads(out.splitlines()[-1]))


def test_listed_help_is_each_commands_own() -> None:
    ctx = click.Context(main)
    for name, lazy in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None, name
        assert command.get_short_help_str(limit=10_000) == lazy.help, name
    assert main.list_commands(ctx) == sorted(COMMANDS)


def test_default_database_url_is_the_settings_default() -> None:
    assert DEFAULT_DATABASE_URL == SETTINGS_DEFAULT_URL


def test_help_and_version_import_no_command() -> None:
    for args in (["--help"], ["--version"]):
        imported = _imported_after(args)
        assert [m for m in (*HEAVY, "sqlalchemy") if m in imported] == [], args


@pytest.mark.parametrize("args", [["spend", "--by", "key,day"], ["spend", "--format", "json"]])
def test_spend_imports_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    subprocess.run(
        [sys.executable, "-m", "metering", "--database-url", url, "db", "upgrade"],
        check=True,
        capture_output=True,
    )
    imported = _imported_after(["--database-url", url, *args])
    assert "sqlalchemy" in imported  # it did run the command
    assert [m for m in HEAVY if m in imported] == []
