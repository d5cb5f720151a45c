"""Price versions in the database: load the book, save imported sheets, sync shipped ones."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import Connection, Engine, delete, func, insert, or_, select, update

from metering.core.pricing import PriceBook, PriceVersion, Rates
from metering.core.sheets import parse_toml_sheet, tiers_from_json, version_to_dict
from metering.errors import Conflict, NotFound
from metering.resources import pricing_dir
from metering.storage.models import PriceVersionRow, RepriceAudit, UsageRecord


def _row_to_version(row: PriceVersionRow) -> PriceVersion:
    return PriceVersion(
        provider=row.provider,
        model=row.model,
        effective_from=row.effective_from,
        rates=Rates.from_mapping(json.loads(row.rates), bounded=False),
        tiers=tiers_from_json(json.loads(row.tiers)),
        max_input_tokens=row.max_input_tokens,
        max_output_tokens=row.max_output_tokens,
        mode=row.mode,
        source=row.source,
        id=row.id,
    )


def load_versions(
    conn: Connection,
    *,
    provider: str | None = None,
    model: str | None = None,
    which: str = "live",
) -> list[PriceVersion]:
    """The live versions; ``which="replaced"``: the replaced ones (whose rates the records
    that point to them were billed with); ``"all"``: both."""
    query = select(PriceVersionRow).order_by(
        PriceVersionRow.provider,
        PriceVersionRow.model,
        PriceVersionRow.effective_from,
        PriceVersionRow.id,
    )
    live = PriceVersionRow.replaced_at.is_(None)
    if which != "all":
        query = query.where(live if which == "live" else ~live)
    if provider is not None:
        query = query.where(PriceVersionRow.provider == provider)
    if model is not None:
        query = query.where(PriceVersionRow.model == model)
    rows = conn.execute(query).all()
    return [_row_to_version(PriceVersionRow(**row._mapping)) for row in rows]


def load_price_book(conn: Connection) -> PriceBook:
    return PriceBook(load_versions(conn))


class Drop(NamedTuple):
    """A saved version that lacks fields of the version before it (or that it replaced)."""

    version: PriceVersion
    previous: PriceVersion
    fields: tuple[str, ...]


@dataclass
class SaveResult:
    added: list[PriceVersion] = field(default_factory=list)
    unchanged: list[PriceVersion] = field(default_factory=list)
    replaced: list[PriceVersion] = field(default_factory=list)
    conflicts: list[PriceVersion] = field(default_factory=list)
    drops: list[Drop] = field(default_factory=list)


def _note_drops(result: SaveResult, before: list[PriceVersion], version: PriceVersion) -> None:
    """List ``version`` in ``result.drops`` if it lacks fields of the latest of ``before``
    (a model's versions) in force on or before its date."""
    earlier = [v for v in before if v.effective_from <= version.effective_from]
    previous = max(earlier, key=lambda v: v.effective_from, default=None)
    if previous is not None and (dropped := previous.fields_dropped_by(version)):
        result.drops.append(Drop(version, previous, dropped))


def _values(version: PriceVersion) -> dict[str, object]:
    data = version_to_dict(version)
    return {
        "provider": version.provider,
        "model": version.model,
        "effective_from": version.effective_from,
        "mode": version.mode,
        "rates": json.dumps(data["rates"], sort_keys=True),
        "tiers": json.dumps(data["tiers"], sort_keys=True),
        "max_input_tokens": version.max_input_tokens,
        "max_output_tokens": version.max_output_tokens,
        "source": version.source[:500],
    }


def save_versions(
    conn: Connection, versions: list[PriceVersion], *, replace: bool = False
) -> SaveResult:
    """Insert new versions. A version already stored for the same provider, model and date
    is left alone when its prices are equal, and is a conflict (or, with ``replace``, a
    correction that overwrites it) when they differ. A version added or replaced that lacks
    fields of the one before it (or of the one it replaces) is also listed in ``drops``."""
    stored = load_versions(conn)
    existing = {(v.provider, v.model, v.effective_from): v for v in stored}
    by_model: dict[str, list[PriceVersion]] = {}
    for v in stored:
        by_model.setdefault(v.key, []).append(v)
    result = SaveResult()
    now = datetime.now(UTC).replace(tzinfo=None)
    new_rows = []
    for version in versions:
        old = existing.get((version.provider, version.model, version.effective_from))
        if old is None:
            _note_drops(result, by_model.get(version.key, []), version)
            new_rows.append({**_values(version), "created_at": now})
            existing[(version.provider, version.model, version.effective_from)] = version
            by_model.setdefault(version.key, []).append(version)
            result.added.append(version)
        elif old.same_prices(version) and old.max_output_tokens == version.max_output_tokens:
            result.unchanged.append(version)
        elif replace and old.id is not None:
            # Never an edit: records (and servers that have the old rates cached) point to
            # old.id, which keeps its rates; the correction is a new row, a new id.
            _note_drops(result, [old], version)
            conn.execute(
                update(PriceVersionRow).where(PriceVersionRow.id == old.id).values(replaced_at=now)
            )
            new_id = conn.execute(
                insert(PriceVersionRow)
                .values(**_values(version), created_at=now)
                .returning(PriceVersionRow.id)
            ).scalar_one()
            conn.execute(
                update(PriceVersionRow)
                .where(PriceVersionRow.id == old.id)
                .values(replaced_by=new_id)
            )
            result.replaced.append(dataclasses.replace(version, id=int(new_id)))
        else:
            result.conflicts.append(version)
    if new_rows:
        conn.execute(insert(PriceVersionRow), new_rows)
    return result


def remove_versions(
    conn: Connection, *, provider: str, model: str, effective_from: date | None = None
) -> list[PriceVersion]:
    """Delete a model's price versions (only the one of ``effective_from`` if given). A
    version that records (or reprice audits) point to is history and is refused, as is a
    shipped one (the next start would add it again); nothing is deleted then."""
    versions = [
        v
        for v in load_versions(conn, provider=provider, model=model)
        if effective_from is None or v.effective_from == effective_from
    ]
    on = f" effective {effective_from}" if effective_from is not None else ""
    if not versions:
        raise NotFound(
            f"no price version of {provider}/{model}{on}; `metering prices show "
            f"{provider}/{model}` lists its versions"
        )
    ids = [v.id for v in versions if v.id is not None]
    priced: dict[int | None, int] = {
        version_id: count
        for version_id, count in conn.execute(
            select(UsageRecord.price_version_id, func.count())
            .where(UsageRecord.price_version_id.in_(ids))
            .group_by(UsageRecord.price_version_id)
        )
    }
    audited = {
        i
        for pair in conn.execute(
            select(RepriceAudit.old_price_version_id, RepriceAudit.new_price_version_id).where(
                or_(
                    RepriceAudit.old_price_version_id.in_(ids),
                    RepriceAudit.new_price_version_id.in_(ids),
                )
            )
        )
        for i in pair
    }
    shipped = {(v.provider, v.model, v.effective_from) for v in shipped_sheet_versions()}
    for v in versions:
        what = f"{v.key} effective {v.effective_from}"
        if priced.get(v.id):
            raise Conflict(
                f"{what} priced {priced[v.id]} record(s) and cannot be removed; supersede it "
                "instead: import a version with a later effective_from"
            )
        if v.id in audited:
            raise Conflict(
                f"{what} is named by reprice audits and cannot be removed; supersede it "
                "instead: import a version with a later effective_from"
            )
        if (v.provider, v.model, v.effective_from) in shipped:
            raise Conflict(
                f"{what} ships with metering (pricing/) and would be added again at the next "
                "start; supersede it instead: import a version with a later effective_from"
            )
    conn.execute(delete(PriceVersionRow).where(PriceVersionRow.id.in_(ids)))
    return versions


def shipped_sheet_versions(directory: Path | None = None) -> list[PriceVersion]:
    directory = directory or pricing_dir()
    versions: list[PriceVersion] = []
    for path in sorted(directory.glob("*.toml")):
        versions.extend(
            parse_toml_sheet(path.read_text(encoding="utf-8"), source=f"sheet:{path.name}")
        )
    return versions


def sync_shipped_sheets(engine: Engine) -> SaveResult:
    """Add the price versions shipped in ``pricing/`` that the database does not have yet.
    Operator-imported versions for the same date win (they are left as they are)."""
    versions = shipped_sheet_versions()
    with engine.begin() as conn:
        return save_versions(conn, versions)
