"""``/admin/v1/spend``, ``/exports/{month}``, ``/reconcile``, ``/audit``: the twins of
``metering spend``, ``export``, ``reconcile`` and ``audit`` (``operations.reports``)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection

from metering.admin.endpoint import BOOL, INT, STR, USD, Endpoint, listing, obj
from metering.admin.http import AdminRequest, ApiError, Param, Reply, Streamed
from metering.operations.reports import audit_rows, reconcile_report, spend_report
from metering.reports.common import parse_month
from metering.reports.export import Detail

SPEND_ROW = obj(("requests", "errors", "total_cost"), requests=INT, errors=INT, total_cost=USD)
RECONCILE = obj(
    ("ok", "rollup_problems", "budget_problems", "cost_differences", "unpriced_records"),
    ok=BOOL, rollup_problems={"type": "array"}, budget_problems={"type": "array"},
    cost_differences=INT, unpriced_records=INT,
)  # fmt: skip
AUDIT = obj(("id", "at", "actor", "action", "target", "before", "after"),
            id=INT, at=STR, actor=STR, action=STR, target=STR)  # fmt: skip
_MONTH = re.compile(r"^\d{4}-\d{2}$")


def spend(conn: Connection, request: AdminRequest) -> Reply:
    q = request.query
    report = spend_report(
        conn,
        by=q.get("by", "key"),
        since=q.get("since"),
        until=q.get("until"),
        key=q.get("key"),
        provider=q.get("provider"),
        model=q.get("model"),
        tag=q.get("tag"),
        end_user=q.get("end_user"),
    )
    return Reply(200, {"data": report.rows})


def _month(text: str) -> str:
    if not _MONTH.match(text):
        raise ApiError(400, "invalid_request_error", f"month {text!r} is not YYYY-MM")
    parse_month(text)
    return text


def export(conn: Connection, request: AdminRequest) -> Streamed:
    from metering.reports.export_stream import stream_export

    month = _month(request.path_params["month"])
    detail: Detail = "requests" if request.query.get("detail") == "requests" else "summary"
    suffix = "-requests" if detail == "requests" else ""

    def write(conn: Connection, sink: Any) -> None:
        stream_export(conn, month=month, detail=detail, sink=sink)

    return Streamed(b"text/csv; charset=utf-8", f"costs-{month}{suffix}.csv", write)


def reconcile(conn: Connection, request: AdminRequest) -> Reply:
    q = request.query
    month = _month(q["month"]) if "month" in q else None
    outcome = reconcile_report(conn, month=month, strict=q.get("strict", False),
                               limit=q.get("limit", 50))  # fmt: skip
    return Reply(200, outcome.as_json())


def audit(conn: Connection, request: AdminRequest) -> Reply:
    q = request.query
    rows = audit_rows(
        conn,
        actor=q.get("actor"),
        action=q.get("action"),
        since=q.get("since"),
        limit=q.get("limit", 100),
        offset=q.get("offset", 0),
    )
    return Reply(200, {"data": rows})


SPEND_QUERY = (
    Param(
        "by",
        description="key,team,customer,provider,model,day,month,tag,end_user (comma-separated)",
    ),
    Param("since", "date", "first UTC day included"),
    Param("until", "date", "last UTC day included"),
    Param("key", description="only this virtual key (name or id)"),
    Param("provider", description="only this (serving) provider"),
    Param("model", description="only this (serving) model"),
    Param("tag", description="only requests with this tag"),
    Param("end_user", description="only this end user"),
)

ENDPOINTS = [
    Endpoint("GET", "/spend", "reports:read", spend,
             "Spend per group, as metering spend --format json", query=SPEND_QUERY,
             response=listing(SPEND_ROW)),
    Endpoint("GET", "/exports/{month}", "reports:read", export,
             "The month's cost CSV (summary or one row per request), streamed",
             query=(Param("detail", enum=("summary", "requests")),), csv=True),
    Endpoint("GET", "/reconcile", "reports:read", reconcile,
             "Counters and rollups against the records; cost differences, unpriced records",
             query=(Param("month", description="YYYY-MM"), Param("strict", "boolean"),
                    Param("limit", "integer", minimum=0, maximum=10_000)),
             response=RECONCILE),
    Endpoint("GET", "/audit", "audit:read", audit, "Changes, newest first",
             query=(Param("actor"), Param("action"), Param("since", "date"),
                    Param("limit", "integer", minimum=1, maximum=1000),
                    Param("offset", "integer", minimum=0, maximum=10**9)),
             response=listing(AUDIT)),
]  # fmt: skip
