"""Dead letters: counts per reason of the letters no longer (or never) kept one by one.

The dead-letter store is bounded by bytes and age; what it prunes, and what the per-device
rate limits only count, is added here so that the counts per reason stay whole.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'dead_letter_counts',
        sa.Column('reason', sa.String(length=32), nullable=False),
        sa.Column('letters', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('reason'),
    )


def downgrade() -> None:
    op.drop_table('dead_letter_counts')
