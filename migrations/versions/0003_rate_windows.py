"""rate windows: requests and tokens per key per one-minute window (rpm/tpm limits)

One row per key and minute, updated by one conditional UPSERT per request, so
every `metering serve` process on one database enforces the same limits.
Rows older than a few minutes are deleted by the server's periodic sweep.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 10:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('rate_windows',
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('window_start', sa.DateTime(), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.Column('tokens', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('key_id', 'window_start', name=op.f('pk_rate_windows'))
    )


def downgrade() -> None:
    op.drop_table('rate_windows')
