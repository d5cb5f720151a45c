"""``metering journal``: the record journal of records that could not be committed
(``storage.journal``): its backlog, and a replay of the journals of stopped processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from metering.cli.context import CliContext, pass_context
from metering.cli.output import format_option, render
from metering.storage.journal import default_journal_dir, journal_status

DIR_HELP = "Journal folder [env: METERING_JOURNAL_DIR; default: beside the SQLite file]."


_dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    envvar="METERING_JOURNAL_DIR",
    help=DIR_HELP,
)


def _directory(ctx: CliContext, given: Path | None) -> Path:
    return given if given is not None else default_journal_dir(ctx.database_url)


@click.group(name="journal")
def journal() -> None:
    """Records journaled while the database could not take them, until they are replayed."""


@journal.command(name="status")
@_dir_option
@format_option
@pass_context
def journal_status_command(ctx: CliContext, directory: Path | None, fmt: str) -> None:
    """Each journal file: held by a running process or not, records waiting, torn lines."""
    folder = _directory(ctx, directory)
    rows = [
        {
            "file": str(f.path),
            "held_by_running_process": f.held,
            "pending": f.entries,
            "torn_lines": f.torn,
        }
        for f in journal_status(folder)
    ]
    if not rows and fmt == "table":
        click.echo(f"no journal in {folder}: nothing waits to be replayed")
        return
    click.echo(
        render(rows, fmt, columns=["file", "held_by_running_process", "pending", "torn_lines"])
    )


@journal.command(name="replay")
@_dir_option
@pass_context
def journal_replay(ctx: CliContext, directory: Path | None) -> None:
    """Put the journals of stopped processes in the database now (a running server
    replays its own, and these, by itself). Idempotent: a record already there is
    skipped; torn lines are reported and set aside in a .rejected file."""
    from metering.gateway.recorder import RecordWriter
    from metering.storage.journal import Journal

    folder = _directory(ctx, directory)

    async def run() -> tuple[int, int, int, int]:
        writer = RecordWriter(ctx.engine(), Journal(folder))
        try:
            done = await writer.replay()
        finally:
            await writer.close()
            assert writer.journal is not None
            writer.journal.close()
        return done.inserted, done.duplicate, done.left, done.torn

    inserted, duplicate, left, torn = asyncio.run(run())
    held = sum(1 for f in journal_status(folder) if f.held)
    click.echo(
        f"replayed {inserted} record(s), {duplicate} already there, {torn} torn line(s) "
        f"set aside, {left} still waiting; {held} journal(s) held by running "
        "processes (they replay their own)"
    )
    if left:
        raise click.ClickException("the database did not take every record; run it again")
