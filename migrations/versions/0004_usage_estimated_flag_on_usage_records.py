"""usage_estimated flag on usage records

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 20:40:45.179053

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Existing rows get false, then the ones billed from an estimate are marked (rows that
    # were estimated but unpriced cannot be told apart any more: they stay false).
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('usage_estimated', sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        sa.text("UPDATE usage_records SET usage_estimated = :t WHERE cost_source = 'estimated'")
        .bindparams(t=True)
    )


def downgrade() -> None:
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_column('usage_estimated')
