"""cached_write_1h_tokens on usage records and daily rollups

The 1-hour part of a record's cache writes (cached_write_tokens keeps counting every
write), priced at its own rate. Rows written before this revision did not tell the
1-hour writes apart: they get 0, so their stored cost and a reprice of them are what
they were. The server default also lets a process of the previous version go on
writing records (and rollup rows) while databases are upgraded.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 06:19:15.879979

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ('usage_records', 'daily_rollups')  # both hold storage.models.UsageColumns


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(
                    'cached_write_1h_tokens', sa.BigInteger(), server_default=sa.text('0'),
                    nullable=False,
                )
            )


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('cached_write_1h_tokens')
