"""replaced price versions keep their rows

``prices import --replace`` used to overwrite a version's rates in place, so the records
billed with the old rates pointed at rates they were never billed with. Now the replaced
row stays (``replaced_at``, ``replaced_by``) and the correction is a new row: the unique
constraint on (provider, model, effective_from) becomes a unique index over the live rows
only. On SQLite that is a copy of the table (batch mode, foreign keys off for the
migration: ``migrations/env.py``); the rows and their ids are kept.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 11:20:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0009'
down_revision: Union[str, None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_LIVE = sa.text('replaced_at IS NULL')


def upgrade() -> None:
    with op.batch_alter_table('price_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replaced_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('replaced_by', sa.Integer(), nullable=True))
        batch_op.drop_constraint(
            'uq_price_versions_provider_model_effective_from', type_='unique'
        )
        batch_op.create_index(
            'uq_price_versions_live',
            ['provider', 'model', 'effective_from'],
            unique=True,
            sqlite_where=_LIVE,
            postgresql_where=_LIVE,
        )


def downgrade() -> None:
    # Only the live rows fit the old constraint, and records point to the replaced ones.
    replaced = op.get_bind().execute(
        sa.text('SELECT count(*) FROM price_versions WHERE replaced_at IS NOT NULL')
    ).scalar()
    if replaced:
        raise RuntimeError(
            f'{replaced} replaced price version(s) hold the rates records were billed with; '
            'revision 0008 has no place for them'
        )
    with op.batch_alter_table('price_versions', schema=None) as batch_op:
        batch_op.drop_index('uq_price_versions_live')
        batch_op.create_unique_constraint(
            'uq_price_versions_provider_model_effective_from',
            ['provider', 'model', 'effective_from'],
        )
        batch_op.drop_column('replaced_by')
        batch_op.drop_column('replaced_at')
