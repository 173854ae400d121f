"""Incidents: the data-quality flags of the messages they gathered (a device clock 8 days behind, a sequence jump).

Hygiene flags an alarm and lets it through (ingest/hygiene.py); the incident keeps the flags.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 01:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flags_json', sa.Text(), server_default='[]', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_column('flags_json')
