"""``metering serve`` refuses a configuration it cannot run with: one line, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from metering.cli import main


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"METERING_HEARTBEAT_SECONDS": "20"},  # dead after 30 s: a live one could be
            "Error: invalid configuration: METERING_STALE_AFTER_SECONDS must be at least "
            "3 × METERING_HEARTBEAT_SECONDS (else a live process can be declared dead)\n",
        ),
        (
            {"METERING_SWEEP_SECONDS": "0"},
            "Error: invalid configuration: METERING_SWEEP_SECONDS: Input should be greater "
            "than 0\n",
        ),
    ],
)
def test_serve_refuses_bad_liveness_settings(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    result = CliRunner().invoke(main, ["--database-url", url, "serve", "--port", "1"], env=env)
    assert result.exit_code == 1
    assert result.output == message


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--upstream", "notaurl"],
            {},
            "Error: invalid configuration: --upstream: 'notaurl' is not an http:// or "
            "https:// URL with a host (e.g. http://127.0.0.1:8080)\n",
        ),
        (
            [],
            {"METERING_UPSTREAM_URL": "ftp://gateway"},
            "Error: invalid configuration: METERING_UPSTREAM_URL: 'ftp://gateway' is not an "
            "http:// or https:// URL with a host (e.g. http://127.0.0.1:8080)\n",
        ),
        (
            ["--upstream", "http://"],
            {},
            "Error: invalid configuration: --upstream: 'http://' is not an http:// or "
            "https:// URL with a host (e.g. http://127.0.0.1:8080)\n",
        ),
    ],
)
def test_serve_refuses_an_upstream_that_is_not_a_url(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    restored: dict[str, str | None] = {"METERING_UPSTREAM_URL": None, "METERING_DATABASE_URL": None}
    result = CliRunner().invoke(
        main, ["--database-url", url, "serve", "--port", "1", *args], env={**restored, **env}
    )
    assert (result.exit_code, result.output) == (1, message)
    assert not (tmp_path / "m.db").exists()  # refused before the database is touched
