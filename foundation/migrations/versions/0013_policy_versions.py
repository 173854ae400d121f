"""Escalation policies as data: every version of the policy document, with who stored it and what it changed.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'policy_versions',
        sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('created_ms', sa.BigInteger(), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('previous_version', sa.Integer(), nullable=True),
        sa.Column('digest', sa.String(length=16), nullable=False),
        sa.Column('comment', sa.String(length=400), nullable=False),
        sa.Column('changes', sa.Text(), nullable=False),
        sa.Column('document', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('version'),
    )


def downgrade() -> None:
    op.drop_table('policy_versions')
