"""The record journal's file: lines that round-trip, a torn tail set aside and reported,
ownership by ``flock`` (a journal nobody holds is an orphan to replay)."""

from __future__ import annotations

import zlib
from datetime import datetime
from pathlib import Path

import orjson

from metering.core.rate_limits import RateCharge
from metering.storage.journal import (
    Journal,
    JournalEntry,
    decode,
    default_journal_dir,
    encode,
    journal_status,
    orphan,
    read_journal,
    remove_orphan,
)
from metering.storage.ledger import Settlement
from tests.helpers import usage_row

AT = datetime(2026, 12, 2, 19, 0, 0, 123456)


def entry(n: int, rate: bool = False) -> JournalEntry:
    record = usage_row(
        request_id=f"r{n}",
        started_at=AT,
        ended_at=AT.replace(microsecond=0),
        key_id=1,
        provider="openai",
        model="gpt-4o\ufffd",
        requested_model="openai/gpt-4o",
        request_type="chat_completion",
        status="success",
        total_cost=7_250_000 + n,
        cost_source="computed",
    )
    tag = RateCharge(3, datetime(2026, 12, 2, 19, 0), 120, True) if rate else None
    return JournalEntry(record, Settlement(budgets=n % 2 == 0, rate=tag))


def test_a_line_round_trips_exactly() -> None:
    for n in range(3):
        assert decode(encode(entry(n, rate=n == 1))) == entry(n, rate=n == 1)


def test_a_line_written_before_the_one_hour_writes_column_replays() -> None:
    """A journal outlives an upgrade: a record without cached_write_1h_tokens had none."""
    old = entry(0)
    payload = orjson.loads(encode(old).split(b" ", 1)[1])
    del payload["record"]["cached_write_1h_tokens"]
    body = orjson.dumps(payload)
    assert decode(b"%08x " % zlib.crc32(body) + body + b"\n") == old


def test_a_torn_tail_is_reported_and_the_good_lines_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append([entry(1), entry(2)])
    journal.append([entry(3)])
    line = encode(entry(4))
    with journal.path.open("ab") as fh:
        fh.write(line[: len(line) // 2])  # the process died mid-append
    read = read_journal(journal.path)
    assert [e.record.request_id for e in read.entries] == ["r1", "r2", "r3"]
    assert [n for n, _ in read.torn] == [4] and "cut short" in read.torn[0][1]
    damaged = bytearray(encode(entry(5)))
    damaged[20] ^= 1
    with journal.path.open("ab") as fh:
        fh.write(b"\n" + bytes(damaged))
    read = read_journal(journal.path)
    assert len(read.entries) == 3 and "checksum" in read.torn[-1][1]
    journal.close()


def test_a_held_journal_is_not_an_orphan_and_a_released_one_is(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.append([entry(1)])
    [status] = journal_status(tmp_path)
    assert (status.held, status.entries, status.torn) == (True, 1, 0)
    with orphan(journal.path) as read:
        assert read is None  # its process is alive: it replays it itself
    journal.close()  # the process is gone, its backlog stays
    [status] = journal_status(tmp_path)
    assert (status.held, status.entries) == (False, 1)
    with journal.path.open("ab") as fh:
        fh.write(b"0000 torn")
    with orphan(journal.path) as read:
        assert read is not None and len(read.entries) == 1 and len(read.torn) == 1
        remove_orphan(journal.path, read)
    assert journal_status(tmp_path) == []
    rejected = journal.path.with_name(journal.path.name + ".rejected")
    assert rejected.read_bytes() == b"0000 torn\n"  # kept for a person, never replayed


def test_an_empty_journal_leaves_no_file_and_clear_empties_it(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "new")
    journal.close()
    assert not (tmp_path / "new").exists()  # created on first use only
    journal = Journal(tmp_path / "new")
    journal.append([entry(1)])
    assert journal.pending == 1
    journal.clear(journal.read())
    assert journal.pending == 0 and journal.read().entries == []
    journal.close()
    assert list((tmp_path / "new").iterdir()) == []


def test_the_default_folder_is_beside_the_sqlite_file() -> None:
    assert default_journal_dir("sqlite:////data/m.db") == Path("/data/m.db-journal.d")
    assert default_journal_dir("postgresql+psycopg://u@h/db") == Path("metering-journal")
