"""Devices: a sequence window of their own for status messages, and which `online` opened the current connection.

A device's last will is numbered when its connection opens and published when it dies,
perhaps thousands of messages later: judged with its status messages it is recent, not a
replay; and the `online` it follows tells the current connection's will from an older one's.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 12:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status_seq_highest', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('status_seq_window', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('online_seq', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.alter_column('status_seq_window', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('devices', schema=None) as batch_op:
        batch_op.drop_column('online_seq')
        batch_op.drop_column('status_seq_window')
        batch_op.drop_column('status_seq_highest')
