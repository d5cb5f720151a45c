"""The README documents every CLI command and its quickstart runs the main job."""

from __future__ import annotations

from pathlib import Path

import click

from metering.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _command_paths(group: click.Group, prefix: str = "metering") -> list[str]:
    """Every command path, loading lazily registered commands as `metering NAME` would."""
    ctx = click.Context(group)
    paths = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            paths += _command_paths(command, path)
        else:
            paths.append(path)
    return paths


def test_every_command_is_in_the_readme() -> None:
    paths = _command_paths(main)
    assert len(paths) >= 20
    missing = [p for p in paths if p not in README]
    assert missing == []


def test_quickstart_is_install_and_demo_then_tests() -> None:
    block = README.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    first, second = [line for line in block.strip().splitlines() if line.strip()]
    assert first == "pip install . && metering demo"
    assert "pytest" in second
