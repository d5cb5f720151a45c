"""``metering ingest``: backfill usage records from a JSON Lines file of saved responses."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from metering.cli.context import CliContext, pass_context
from metering.config import Settings
from metering.errors import InvalidInput, MeteringError
from metering.reports.ingest import IngestResult, ingest_lines
from metering.runtime import tune_gc
from metering.storage.audit import CLI_ACTOR, record_change


class BadLines(MeteringError):
    """Some lines could not be ingested (the others were)."""


def _report(result: IngestResult) -> None:
    for lineno, reason in result.bad_lines:
        click.echo(f"line {lineno}: {reason}", err=True)
    if result.bad > len(result.bad_lines):
        click.echo(f"… and {result.bad - len(result.bad_lines)} more bad line(s)", err=True)
    for line in result.budget_changes:
        click.echo(f"budget: {line}")
    click.echo(f"ingested {result.ingested}, duplicate {result.duplicate}, bad {result.bad}")


@click.command(name="ingest")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_context
def ingest(ctx: CliContext, file: Path) -> None:
    """Backfill saved responses: one JSON object a line with key (name or id), timestamp
    (ISO-8601; UTC when no zone), response, and optional request_id and model. Ingesting
    the same file again adds nothing; bad lines are reported and skipped (exit status 1)."""
    try:
        fh = file.open("rb")
    except OSError as exc:
        raise InvalidInput(f"cannot read {file}: {exc.strerror}") from None
    now = datetime.now(UTC).replace(tzinfo=None)
    policy = Settings().billing_policy
    engine = ctx.engine()
    tune_gc(batch=True)  # before the workers fork: they inherit the frozen objects and thresholds
    with fh:
        if sys.stderr.isatty():
            size = file.stat().st_size
            with click.progressbar(length=size, label="ingesting", file=sys.stderr) as bar:
                result = ingest_lines(engine, fh, now=now, policy=policy, progress=bar.update)
        else:
            result = ingest_lines(engine, fh, now=now, policy=policy)
    _report(result)
    if result.ingested:
        with engine.begin() as conn:  # after the batches, which commit as they go
            record_change(
                conn,
                actor=CLI_ACTOR,
                action="records.ingest",
                target=f"file:{file.name}",
                before=None,
                after={
                    "ingested": result.ingested,
                    "duplicate": result.duplicate,
                    "bad": result.bad,
                },
            )
    if result.bad:
        raise BadLines(f"{result.bad} bad line(s) skipped (listed above); the others were ingested")
