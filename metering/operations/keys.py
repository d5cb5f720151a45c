"""Virtual key operations: create (with an optional budget), update, disable/enable,
list with filters and pagination, show."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from metering.core.days import missing_day
from metering.core.model_patterns import check_model_pattern
from metering.core.periods import parse_period, parse_timezone
from metering.errors import InvalidInput
from metering.operations.limits import limit_from_option
from metering.storage.attribution import check_key_tags, set_key_tags
from metering.storage.audit import record_change
from metering.storage.budgets import set_budget
from metering.storage.keys import (
    CreatedKey,
    KeyInfo,
    create_key,
    ensure_customer,
    ensure_team,
    find_key,
    list_keys,
    set_key_enabled,
    team_customer,
    update_key,
    utcnow,
)

KEY_STATUSES = ("active", "disabled", "expired")
UPDATABLE = ("models", "rpm", "tpm", "expires", "team", "customer", "tags")


def parse_expiry(value: str | None, *, now: datetime) -> datetime | None:
    """``2025-12-31`` (the key stops working at 00:00 UTC that day) or an ISO date-time
    (with an offset, or UTC) → naive UTC, after ``now`` (naive UTC)."""
    if value is None:
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        problem = missing_day(text[:10])
        if problem is not None:
            raise InvalidInput(f"--expires {problem}") from None
        raise InvalidInput(
            f"--expires {value!r} is not a date (YYYY-MM-DD) or ISO date-time"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if moment <= now:
        raise InvalidInput(
            f"--expires {text} is in the past (now {now.isoformat(timespec='seconds')}Z): "
            "the key would never work"
        )
    return moment


def _check_limit(value: int | None, flag: str) -> int | None:
    if value is not None and (isinstance(value, bool) or value <= 0):
        raise InvalidInput(f"{flag} must be a positive whole number")
    return value


@dataclass(frozen=True, slots=True)
class KeySpec:
    """A key to create, as the CLI's options or the API's body give it."""

    name: str
    team: str | None = None
    customer: str | None = None
    models: tuple[str, ...] = ()
    rpm: int | None = None
    tpm: int | None = None
    expires: str | None = None
    budget: str | None = None
    period: str | None = None
    soft: int | None = None
    timezone: str = "UTC"
    allow_zero: bool = False
    tags: tuple[str, ...] = ()  # the key's default request tags


def create_key_op(conn: Connection, spec: KeySpec, *, actor: str) -> CreatedKey:
    """Create a key (and its budget, with ``budget`` and ``period``) in one transaction."""
    now = datetime.now(UTC).replace(tzinfo=None)
    expires_at = parse_expiry(spec.expires, now=now)
    for pattern in spec.models:
        check_model_pattern(pattern, option="--models")
    check_key_tags(spec.tags)  # before the key exists
    _check_limit(spec.rpm, "--rpm")
    _check_limit(spec.tpm, "--tpm")
    if (spec.budget is None) != (spec.period is None):
        raise InvalidInput("--budget and --period go together (e.g. --budget 25 --period monthly)")
    if spec.budget is None and (spec.soft is not None or spec.timezone != "UTC"):
        raise InvalidInput("--soft and --timezone describe a budget: add --budget and --period")
    limit_nano = (
        limit_from_option(spec.budget, option="--budget", allow_zero=spec.allow_zero)
        if spec.budget is not None
        else None
    )
    if spec.period is not None:  # refuse a bad budget before the key exists
        parse_period(spec.period)
        parse_timezone(spec.timezone)
    created = create_key(
        conn,
        name=spec.name,
        team=spec.team,
        customer=spec.customer,
        allowed_models=list(spec.models),
        rpm_limit=spec.rpm,
        tpm_limit=spec.tpm,
        expires_at=expires_at,
        tags=spec.tags,
    )
    after: dict[str, Any] = created.info.as_dict()
    if limit_nano is not None and spec.period is not None:
        status = set_budget(
            conn,
            owner_type="key",
            owner_id=created.info.id,
            limit_nano=limit_nano,
            period=spec.period,
            timezone=spec.timezone,
            soft_pct=spec.soft,
            now=now,
        )
        after["budget"] = status.as_dict()
    record_change(
        conn, actor=actor, action="key.create", target=f"key:{created.info.name}",
        before=None, after=after,
    )  # fmt: skip
    return created


def update_key_op(
    conn: Connection, key_ref: str | int, changes: Mapping[str, Any], *, actor: str
) -> KeyInfo:
    """Change some of ``UPDATABLE`` (a None value clears models, rpm, tpm, expires,
    team, customer or tags: the key's default request tags, replaced as a whole). A new
    team of a customer sets the key's customer too, as at creation; a team of another
    customer than the one given is a Conflict."""
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise InvalidInput(f"cannot update {unknown[0]!r} (updatable: {', '.join(UPDATABLE)})")
    if not changes:
        raise InvalidInput(f"nothing to update: give one of {', '.join(UPDATABLE)}")
    before = find_key(conn, key_ref)
    values: dict[str, Any] = {}
    if "models" in changes:
        models = list(changes["models"] or ())
        for pattern in models:
            check_model_pattern(pattern, option="--models")
        values["allowed_models"] = json.dumps(models)
    if "rpm" in changes:
        values["rpm_limit"] = _check_limit(changes["rpm"], "--rpm")
    if "tpm" in changes:
        values["tpm_limit"] = _check_limit(changes["tpm"], "--tpm")
    if "expires" in changes:
        values["expires_at"] = parse_expiry(changes["expires"], now=utcnow())
    customer_id = before.customer_id
    if "customer" in changes:
        customer = changes["customer"]
        customer_id = ensure_customer(conn, customer) if customer else None
        values["customer_id"] = customer_id
    if "team" in changes:
        team = changes["team"]
        team_id = ensure_team(conn, team, customer_id=customer_id) if team else None
        values["team_id"] = team_id
        if team_id is not None and customer_id is None:
            values["customer_id"] = team_customer(conn, team_id)
    if "tags" in changes:
        set_key_tags(conn, key_id=before.id, tags=changes["tags"] or ())
    after = update_key(conn, before.id, **values)
    record_change(
        conn, actor=actor, action="key.update", target=f"key:{before.name}",
        before=before.as_dict(), after=after.as_dict(),
    )  # fmt: skip
    return after


def set_key_enabled_op(
    conn: Connection, key_ref: str | int, *, enabled: bool, actor: str
) -> KeyInfo:
    before = find_key(conn, key_ref)
    after = set_key_enabled(conn, before.id, enabled=enabled)
    record_change(
        conn, actor=actor, action="key.enable" if enabled else "key.disable",
        target=f"key:{before.name}", before=before.as_dict(), after=after.as_dict(),
    )  # fmt: skip
    return after


@dataclass(frozen=True, slots=True)
class KeyFilter:
    team: str | None = None
    customer: str | None = None
    status: str | None = None
    limit: int | None = None
    offset: int = 0


def key_rows(conn: Connection, filters: KeyFilter) -> tuple[list[dict[str, Any]], int]:
    """(one page of keys as ``keys list`` prints them, how many match in all)."""
    if filters.status is not None and filters.status not in KEY_STATUSES:
        raise InvalidInput(f"status {filters.status!r} must be one of {', '.join(KEY_STATUSES)}")
    if filters.limit is not None and filters.limit < 1:
        raise InvalidInput("limit must be a positive whole number")
    if filters.offset < 0:
        raise InvalidInput("offset cannot be negative")
    keys = [
        k
        for k in list_keys(conn)
        if (filters.team is None or filters.team in (k.team, str(k.team_id)))
        and (filters.customer is None or filters.customer in (k.customer, str(k.customer_id)))
        and (filters.status is None or k.status == filters.status)
    ]
    end = None if filters.limit is None else filters.offset + filters.limit
    return [k.as_dict() for k in keys[filters.offset : end]], len(keys)
