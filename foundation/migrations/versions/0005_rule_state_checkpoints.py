"""The alert rules' checkpoints: each stateful rule's snapshot, so a restart forgets no window or deadline.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:26:53.196030
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rule_state',
    sa.Column('rule', sa.String(length=100), nullable=False),
    sa.Column('saved_ms', sa.BigInteger(), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('rule')
    )


def downgrade() -> None:
    op.drop_table('rule_state')
