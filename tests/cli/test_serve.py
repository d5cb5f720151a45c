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
