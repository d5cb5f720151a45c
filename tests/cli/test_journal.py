"""``metering journal status`` and ``replay`` over a journal left by a stopped process."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from metering.cli import main
from metering.storage.journal import Journal, JournalEntry, encode
from metering.storage.ledger import Settlement
from metering.storage.models import UsageRecord
from tests.helpers import make_org, record

T = datetime(2026, 12, 2, 12)


def test_status_then_replay_of_a_stopped_process_journal(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        org = make_org(conn)
    owners = {"key_id": org.key_id, "team_id": org.team_id, "customer_id": org.customer_id}
    folder = tmp_path / "j"
    dead = Journal(folder)
    dead.append([JournalEntry(record(request_id=f"c{i}", **owners, cost_nano=10, started_at=T),
                              Settlement(budgets=True)) for i in range(2)])  # fmt: skip
    dead.close()
    with dead.path.open("ab") as fh:  # the process died writing a third line
        third = record(request_id="c9", **owners, cost_nano=1, started_at=T)
        fh.write(encode(JournalEntry(third, Settlement(budgets=True)))[:40])
    args = ["--database-url", db_url, "journal"]
    status = CliRunner().invoke(main, [*args, "status", "--dir", str(folder), "--format", "json"])
    assert status.exit_code == 0, status.output
    [row] = json.loads(status.output)
    assert (row["held_by_running_process"], row["pending"], row["torn_lines"]) == (False, 2, 1)

    replay = CliRunner().invoke(main, [*args, "replay", "--dir", str(folder)])
    assert replay.exit_code == 0, replay.output
    assert replay.output.startswith("replayed 2 record(s), 0 already there, 1 torn line(s)")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(UsageRecord)).scalar_one() == 2
    empty = CliRunner().invoke(main, [*args, "status", "--dir", str(folder)])
    assert empty.output.startswith("no journal in ")
    again = CliRunner().invoke(main, [*args, "replay", "--dir", str(folder)])
    assert again.output.startswith("replayed 0 record(s)")
