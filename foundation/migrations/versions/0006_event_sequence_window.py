"""Devices: a sequence window of their own for events (ingest's alarm lane lets events overtake telemetry).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 11:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_seq_highest', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('event_seq_window', sa.BigInteger(), server_default='0', nullable=False))
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.alter_column('event_seq_window', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('event_seq_window')
        batch_op.drop_column('event_seq_highest')
