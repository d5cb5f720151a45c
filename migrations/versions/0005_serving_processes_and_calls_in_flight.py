"""serving processes and calls in flight

`metering serve` workers register in serving_processes and heartbeat there; every
admitted request has a calls_in_flight row until its usage record is inserted, so a
call cut by the death of its worker can be recorded as interrupted. Both tables start
empty: reservations of workers that ran before this revision still expire as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 19:22:42.108749

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('serving_processes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_serving_processes')),
    # ids are never reused (see the model)
    sqlite_autoincrement=True,
    )
    # No foreign key to serving_processes: a worker's row goes at a clean stop while rows
    # of it may remain (records that could not commit); the sweep records those.
    op.create_table('calls_in_flight',
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('process_id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=False),
    sa.Column('team_id', sa.Integer(), nullable=True),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('requested_model', sa.String(length=400), nullable=False),
    sa.Column('request_type', sa.String(length=32), nullable=False),
    sa.Column('stream', sa.Boolean(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('prompt_tokens', sa.BigInteger(), nullable=False),
    sa.Column('output_tokens', sa.BigInteger(), nullable=True),
    sa.Column('reserved_nano', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('request_id', name=op.f('pk_calls_in_flight')),
    # one B-tree, no index by process (see the model)
    sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table('calls_in_flight')
    op.drop_table('serving_processes')
