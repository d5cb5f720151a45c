"""``--database-url`` works after the command's name too, on every command."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.testing import CliRunner

from metering.cli import COMMANDS, main


def _leaves(command: click.Command, path: str) -> list[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        return [
            leaf
            for name, sub in sorted(command.commands.items())
            for leaf in _leaves(sub, f"{path} {name}")
        ]
    return [(path, command)]


def test_every_command_takes_database_url_after_its_name() -> None:
    ctx = click.Context(main)
    leaves = [
        leaf
        for name in COMMANDS
        for leaf in _leaves(main.get_command(ctx, name), name)  # type: ignore[arg-type]
    ]
    assert len(leaves) >= 20
    for path, command in leaves:
        options = [p for p in command.params if "--database-url" in p.opts]
        assert len(options) == 1, path


def test_database_url_after_the_command_wins(tmp_path: Path) -> None:
    first, second = (f"sqlite:///{tmp_path / name}" for name in ("first.db", "second.db"))
    runner = CliRunner(env={"METERING_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}"})
    result = runner.invoke(main, ["keys", "create", "app", "--database-url", first])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(main, ["keys", "list", "--format", "json", "--database-url", first])
    assert [k["name"] for k in json.loads(listed.output)] == ["app"]
    # after the command beats before it
    listed = runner.invoke(
        main,
        ["--database-url", second, "keys", "list", "--database-url", first, "--format", "json"],
    )
    assert [k["name"] for k in json.loads(listed.output)] == ["app"]
    listed = runner.invoke(main, ["--database-url", second, "keys", "list", "--format", "json"])
    assert listed.output == "[]\n"
    assert not (tmp_path / "env.db").exists()
