"""The record journal: a local, append-only, fsync'd file per process (README, Storage).

When a usage record cannot be committed after the upstream call (database down or
read-only, disk full, a failure that survived the retry), the gateway appends the record
and what its settlement needs to this process's journal *before* the client gets the
last byte; the journal is replayed into the database (``gateway.replay``) as soon as it
is reachable again. Replay is idempotent by ``request_id``, so a crash between a replay's
commit and the journal's truncation cannot count anything twice.

A line is ``<crc32 hex> <JSON>\\n``: a line that is cut (a crash mid-append) or damaged
fails its checksum or its parse and is reported and set aside (``.rejected``), never
replayed. Each process holds an exclusive ``flock`` on its own file; a journal nobody
holds belongs to a process that is gone, and any process (or ``metering journal
replay``) may replay and remove it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import orjson
from sqlalchemy.engine import URL, make_url

from metering.core.rate_limits import RateCharge
from metering.core.records import UsageRow
from metering.storage.ledger import Settlement

log = logging.getLogger("metering.journal")

PREFIX = "journal-"
SUFFIX = ".jsonl"
REJECTED_SUFFIX = ".rejected"
_DATETIME_FIELDS = ("started_at", "ended_at")
# Record fields added since journals were first written, with the value a line written
# before them means: such a line replays (a journal outlives an upgrade).
_ADDED_FIELDS = {
    "cached_write_1h_tokens": 0,
    "end_user": None,
    "end_user_scope": None,
    "tags": None,
}


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A record and how it settles (``storage.ledger.Settlement``)."""

    record: UsageRow
    settlement: Settlement


@dataclass(slots=True)
class JournalRead:
    entries: list[JournalEntry] = field(default_factory=list)
    torn: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)
    torn_lines: list[bytes] = field(default_factory=list)


def encode(entry: JournalEntry) -> bytes:
    rate = entry.settlement.rate
    payload = orjson.dumps(
        {
            "record": entry.record._asdict(),
            "budgets": entry.settlement.budgets,
            "rate": None
            if rate is None
            else [rate.key_id, rate.window, rate.estimated_tokens, rate.correct_tokens],
        }
    )
    return b"%08x " % zlib.crc32(payload) + payload + b"\n"


def decode(line: bytes) -> JournalEntry:
    """One journal line → its entry; ValueError saying why it is unusable."""
    if not line.endswith(b"\n"):
        raise ValueError("cut short (no end of line): the process stopped while writing it")
    head, _, payload = line[:-1].partition(b" ")
    if len(head) != 8 or zlib.crc32(payload) != int(head, 16):
        raise ValueError("checksum mismatch: the line is damaged")
    data = orjson.loads(payload)
    record = _ADDED_FIELDS | data["record"]
    for name in _DATETIME_FIELDS:
        record[name] = datetime.fromisoformat(record[name])
    rate = data["rate"]
    charge = (
        None
        if rate is None
        else RateCharge(int(rate[0]), datetime.fromisoformat(rate[1]), int(rate[2]), bool(rate[3]))
    )
    return JournalEntry(UsageRow.from_mapping(record), Settlement(bool(data["budgets"]), charge))


def read_journal(path: Path) -> JournalRead:
    result = JournalRead()
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                result.entries.append(decode(line))
            except (ValueError, KeyError, TypeError, IndexError, orjson.JSONDecodeError) as exc:
                result.torn.append((lineno, str(exc)))
                result.torn_lines.append(line)
    return result


def set_aside(path: Path, read: JournalRead) -> None:
    """Keep the unusable lines of ``path`` in ``path.rejected`` (for a person to read)."""
    if not read.torn:
        return
    for lineno, why in read.torn:
        log.error("journal %s line %d skipped: %s", path, lineno, why)
    with path.with_name(path.name + REJECTED_SUFFIX).open("ab") as fh:
        fh.writelines(line if line.endswith(b"\n") else line + b"\n" for line in read.torn_lines)
        fh.flush()
        os.fsync(fh.fileno())


def default_journal_dir(database_url: str | URL) -> Path:
    """Beside the SQLite file (``metering.db`` → ``metering.db-journal.d``), else
    ``./metering-journal`` in the working directory."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        db = Path(str(url.database))
        return db.with_name(db.name + "-journal.d")
    return Path("metering-journal")


def _try_lock(fh: BinaryIO) -> bool:
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class JournalFile:
    path: Path
    held: bool  # by a running process (which replays it itself)
    entries: int
    torn: int


def journal_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    names = (p for p in directory.iterdir() if p.name.startswith(PREFIX))
    return sorted(p for p in names if p.name.endswith(SUFFIX))


def journal_status(directory: Path) -> list[JournalFile]:
    """Every journal in ``directory``: whether a live process holds it, its backlog."""
    status = []
    for path in journal_files(directory):
        with path.open("rb") as fh:
            held = not _try_lock(fh)
            read = read_journal(path)
        status.append(JournalFile(path, held, len(read.entries), len(read.torn)))
    return status


@contextlib.contextmanager
def orphan(path: Path) -> Iterator[JournalRead | None]:
    """The entries of a journal no process holds (None if one does); locked meanwhile.
    The caller replays them and then calls ``remove_orphan(path)`` inside the block."""
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        yield None
        return
    with fh:
        if not _try_lock(fh):
            yield None
            return
        if not path.exists():  # replayed and removed by another process meanwhile
            yield None
            return
        yield read_journal(path)


def remove_orphan(path: Path, read: JournalRead) -> None:
    set_aside(path, read)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class Journal:
    """This process's journal (created on first use, held until ``close``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / (
            f"{PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        )
        self._fh: BinaryIO | None = None
        self.pending = 0  # entries appended and not yet replayed

    def _file(self) -> BinaryIO:
        if self._fh is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            fh = self.path.open("ab")
            if not _try_lock(fh):  # a fresh, unique name: nobody else can hold it
                fh.close()
                raise OSError(f"journal {self.path} is locked by another process")
            self._fh = fh
        return self._fh

    def append(self, entries: list[JournalEntry]) -> None:
        """Write and fsync ``entries``; OSError if they are not durable (then the file is
        cut back to where it was, so no half line stays in front of later ones)."""
        fh = self._file()
        data = b"".join(encode(e) for e in entries)
        start = os.fstat(fh.fileno()).st_size
        try:
            if os.write(fh.fileno(), data) != len(data):
                raise OSError("short write to the journal (disk full?)")
            os.fsync(fh.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fh.fileno(), start)
            raise
        self.pending += len(entries)

    def read(self) -> JournalRead:
        if self._fh is None or not self.path.exists():
            return JournalRead()
        return read_journal(self.path)

    def clear(self, read: JournalRead) -> None:
        """Everything read was replayed: empty the file (its torn lines set aside)."""
        if self._fh is None:
            return
        set_aside(self.path, read)
        os.ftruncate(self._fh.fileno(), 0)
        os.fsync(self._fh.fileno())
        self.pending = 0

    def close(self) -> None:
        """Release the file; an empty journal is removed, a backlog stays for a replay."""
        fh, self._fh = self._fh, None
        if fh is None:
            return
        with fh:
            if os.fstat(fh.fileno()).st_size == 0:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
