"""Budget alert operations that change something (add, remove), with their audit rows.
The alert's state in the log is its listing (``alerts list``): never its secret."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from metering.operations.budgets import model_option, one_owner
from metering.storage.alerts import add_alert, list_alerts, remove_alert
from metering.storage.audit import record_change
from metering.storage.keys import utcnow
from metering.storage.owners import find_owner


def _listed(conn: Connection, alert_id: int) -> dict[str, Any] | None:
    found = [a.as_dict() for a in list_alerts(conn) if a.alert_id == alert_id]
    return found[0] if found else None


def add_alert_op(
    conn: Connection,
    *,
    key: str | None,
    team: str | None,
    customer: str | None,
    url: str,
    thresholds: str,
    payload: str,
    secret: str,
    forecast: bool,
    model: str | None = None,
    actor: str,
) -> tuple[int, str, str]:
    """(alert id, owner type, owner name) of a new alert on the owner's budget (the one
    narrowed to the model pattern ``model``, if given)."""
    owner_type, ref = one_owner(key, team, customer)
    pattern = model_option(model)
    owner_id, name = find_owner(conn, owner_type, ref)
    alert_id = add_alert(
        conn,
        owner_type=owner_type,
        owner_id=owner_id,
        url=url,
        thresholds=thresholds,
        payload=payload,
        secret=secret,
        now=utcnow(),
        forecast=forecast,
        model_pattern=pattern,
    )
    record_change(
        conn, actor=actor, action="alert.add", target=f"alert:{alert_id}",
        before=None, after=_listed(conn, alert_id),
    )  # fmt: skip
    return alert_id, owner_type, name


def remove_alert_op(conn: Connection, alert_id: int, *, actor: str) -> None:
    before = _listed(conn, alert_id)
    remove_alert(conn, alert_id)
    record_change(
        conn, actor=actor, action="alert.remove", target=f"alert:{alert_id}",
        before=before, after=None,
    )  # fmt: skip
