"""Tags in SQL: a key's default tags, and the ``tags``/``record_tags`` rows of records
(README, Attribution). ``insert_record_tags`` is part of ``storage.records``' batch (one
multi-row statement per table, compiled once per dialect like the rest of the writer)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select
from sqlalchemy.sql.elements import ColumnElement

from metering.core.attribution import TAG_SEPARATOR, check_tag, merge_tags
from metering.storage.compiled import Sql, insert_for, table
from metering.storage.models import KeyTag, RecordTag, Tag, VirtualKey
from metering.storage.raw_sql import is_postgres, run

TAGS_PER_STATEMENT = 5000  # × 2 columns: under SQLite's 32,766 parameters


def _insert_tag_names(postgres: bool) -> Any:
    t = table(Tag)
    return insert_for(postgres, t).values({"name": bindparam("name")}).on_conflict_do_nothing()


def _insert_record_tags(postgres: bool) -> Any:
    r = table(RecordTag)
    values: dict[str, Any] = {"record_id": bindparam("record_id"), "tag": bindparam("tag")}
    return insert_for(postgres, r).values(values).on_conflict_do_nothing()


INSERT_TAG_NAMES = Sql(_insert_tag_names, rows=True)
INSERT_RECORD_TAGS = Sql(_insert_record_tags, rows=True)


def insert_record_tags(conn: Connection, records: Iterable[tuple[int, Sequence[str]]]) -> None:
    """The tags of newly inserted records, by record id (most records have none)."""
    pairs = [(record_id, tag) for record_id, tags in records for tag in tags]
    if not pairs:
        return
    postgres = is_postgres(conn)
    names = sorted({tag for _, tag in pairs})  # sorted: one lock order across writers
    for first in range(0, len(names), TAGS_PER_STATEMENT):
        chunk = names[first : first + TAGS_PER_STATEMENT]
        run(conn, INSERT_TAG_NAMES.text(postgres, rows=len(chunk)), chunk)
    for first in range(0, len(pairs), TAGS_PER_STATEMENT):
        part = pairs[first : first + TAGS_PER_STATEMENT]
        sql = INSERT_RECORD_TAGS.text(postgres, rows=len(part))
        run(conn, sql, [v for pair in part for v in pair])


def key_tags_column() -> ColumnElement[Any]:
    """A key's default tags as one comma-joined value, for a query over ``virtual_keys``."""
    k = KeyTag
    joined = func.aggregate_strings(k.tag, TAG_SEPARATOR)
    return select(joined).where(k.key_id == VirtualKey.id).scalar_subquery()


def check_key_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Default tags as given on the command line, checked like a header's."""
    return merge_tags(check_tag(t) for t in tags)


def set_key_tags(conn: Connection, *, key_id: int, tags: Iterable[str]) -> tuple[str, ...]:
    """Replace the key's default tags (none: ``()``); the tags stored."""
    checked = check_key_tags(tags)
    conn.execute(delete(KeyTag).where(KeyTag.key_id == key_id))
    if checked:
        conn.execute(insert(KeyTag), [{"key_id": key_id, "tag": t} for t in checked])
    return checked
