"""unpriced counts on the rollups

``unpriced`` on ``daily_rollups``, ``daily_end_user_rollups`` and ``daily_tag_rollups``:
the records of a group without a price (billed 0 until ``metering reprice``), so every
listing that shows an amount can say how many of its requests it does not price. Plain
ADD COLUMNs with a server default (a writer of the previous version goes on working),
then filled from the unpriced records already there (usually few: one pass over them).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 12:30:00

"""
from collections import Counter
from datetime import date, datetime
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0012'
down_revision: Union[str, None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_TABLES = ('daily_rollups', 'daily_end_user_rollups', 'daily_tag_rollups')
_KEY = ('day', 'key_id', 'team_id', 'customer_id', 'provider', 'model')
_TAG_SEPARATOR = ','  # core.attribution.TAG_SEPARATOR when this revision was written


def _day(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return datetime.fromisoformat(str(value)).date()  # SQLite's text


def upgrade() -> None:
    for name in _TABLES:
        op.add_column(
            name, sa.Column('unpriced', sa.BigInteger(), server_default=sa.text('0'), nullable=False)
        )
    bind = op.get_bind()
    found = bind.execute(sa.text(
        "SELECT started_at, key_id, team_id, customer_id, provider, model, end_user_scope, "
        "end_user, tags FROM usage_records WHERE cost_source = 'unpriced'"
    )).all()
    plain: Counter[tuple[object, ...]] = Counter()
    users: Counter[tuple[object, ...]] = Counter()
    tagged: Counter[tuple[object, ...]] = Counter()
    for started, key_id, team_id, customer_id, provider, model, scope, user, tags in found:
        key = (_day(started), key_id, team_id or 0, customer_id or 0, provider, model)
        plain[key] += 1
        user_key = (*key, scope or '', user or '')
        users[user_key] += 1
        for tag in (tags.split(_TAG_SEPARATOR) if tags else ('',)):
            tagged[(*user_key, tag)] += 1
    for name, counts, columns in (
        ('daily_rollups', plain, _KEY),
        ('daily_end_user_rollups', users, (*_KEY, 'end_user_scope', 'end_user')),
        ('daily_tag_rollups', tagged, (*_KEY, 'end_user_scope', 'end_user', 'tag')),
    ):
        where = ' AND '.join(f'{c} = :{c}' for c in columns)
        statement = sa.text(f'UPDATE {name} SET unpriced = :n WHERE {where}')
        for group, n in counts.items():
            bind.execute(statement, {**dict(zip(columns, group)), 'n': n})


def downgrade() -> None:
    for name in _TABLES:
        op.drop_column(name, 'unpriced')
