"""The audit log: one row per change made through the CLI or the admin API, written in
the change's own transaction (``record_change``), listed by ``metering audit`` and
``GET /admin/v1/audit``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from metering.storage.keys import iso_utc, utcnow
from metering.storage.models import AuditEntry

CLI_ACTOR = "cli"


def _json(state: Any) -> str | None:
    return None if state is None else json.dumps(state, sort_keys=True, default=str)


def record_change(
    conn: Connection, *, actor: str, action: str, target: str, before: Any, after: Any
) -> None:
    """An audit row: ``before``/``after`` are the target's JSON-able state (None: absent)."""
    conn.execute(
        insert(AuditEntry).values(
            at=utcnow(),
            actor=actor,
            action=action,
            target=target,
            before=_json(before),
            after=_json(after),
        )
    )


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None  # naive UTC, inclusive
    limit: int = 100
    offset: int = 0


def list_audit(conn: Connection, filters: AuditFilter) -> list[dict[str, Any]]:
    """Audit rows, newest first."""
    query = select(AuditEntry.__table__).order_by(AuditEntry.id.desc())
    if filters.actor is not None:
        query = query.where(AuditEntry.actor == filters.actor)
    if filters.action is not None:
        query = query.where(AuditEntry.action == filters.action)
    if filters.since is not None:
        query = query.where(AuditEntry.at >= filters.since)
    query = query.limit(filters.limit).offset(filters.offset)
    return [
        {
            "id": row.id,
            "at": iso_utc(row.at),
            "actor": row.actor,
            "action": row.action,
            "target": row.target,
            "before": json.loads(row.before) if row.before is not None else None,
            "after": json.loads(row.after) if row.after is not None else None,
        }
        for row in conn.execute(query)
    ]
