"""budget scopes: model patterns, tags, end users and default end-user budgets

A budget was one per owner (``owner_type``, ``owner_id``). It may now be narrowed to a
model pattern, and may belong to a tag or an end user (``scope``, ``subject``), or be the
default of a customer's end users (``template_id`` on the budgets created from it). The
unique constraint widens to (owner_type, owner_id, scope, subject, model_pattern). On
SQLite that is a copy of the table (batch mode, foreign keys off for the migration:
``migrations/env.py``); rows and ids are kept, so the reservations, events and alerts
that reference budgets (ON DELETE CASCADE) stay attached. An index on the records' end
user lets an end user's budget count its window's records when it is created.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 11:40:00

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0013'
down_revision: Union[str, None] = '0012'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_OLD = 'uq_budgets_owner_type_owner_id'
_NEW = 'uq_budgets_owner_type_owner_id_scope_subject_model_pattern'


def upgrade() -> None:
    with op.batch_alter_table('budgets', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('scope', sa.String(length=32), server_default='', nullable=False)
        )
        batch_op.add_column(
            sa.Column('subject', sa.String(length=128), server_default='', nullable=False)
        )
        batch_op.add_column(
            sa.Column('model_pattern', sa.String(length=200), server_default='', nullable=False)
        )
        batch_op.add_column(sa.Column('template_id', sa.Integer(), nullable=True))
        batch_op.drop_constraint(_OLD, type_='unique')
        batch_op.create_unique_constraint(
            _NEW, ['owner_type', 'owner_id', 'scope', 'subject', 'model_pattern']
        )
    # An end user's budget counts its records in its window when it is created.
    op.create_index(
        'ix_usage_records_end_user_started',
        'usage_records',
        ['end_user_scope', 'end_user', 'started_at'],
    )


def downgrade() -> None:
    # Only the plain key/team/customer budgets fit the old constraint.
    scoped = op.get_bind().execute(
        sa.text(
            "SELECT count(*) FROM budgets WHERE model_pattern <> '' OR scope <> '' "
            "OR subject <> '' OR owner_type NOT IN ('key', 'team', 'customer')"
        )
    ).scalar()
    if scoped:
        raise RuntimeError(
            f'{scoped} budget(s) narrowed to a model or owned by a tag or end user; '
            'the previous revision has no place for them (remove them first)'
        )
    op.drop_index('ix_usage_records_end_user_started', table_name='usage_records')
    with op.batch_alter_table('budgets', schema=None) as batch_op:
        batch_op.drop_constraint(_NEW, type_='unique')
        batch_op.create_unique_constraint(_OLD, ['owner_type', 'owner_id'])
        batch_op.drop_column('template_id')
        batch_op.drop_column('model_pattern')
        batch_op.drop_column('subject')
        batch_op.drop_column('scope')
