"""Escalation state on incidents, and the notification outbox sent by the dispatcher.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 08:40:44.121844
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('notifications',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('incident_id', sa.String(length=32), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('topic', sa.String(length=300), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('tier', sa.String(length=16), nullable=False),
    sa.Column('place_id', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('recipient', sa.String(length=200), nullable=False),
    sa.Column('phone', sa.String(length=32), nullable=False),
    sa.Column('dispatch_id', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('sent_ms', sa.BigInteger(), nullable=True),
    sa.Column('last_error', sa.String(length=500), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.create_index('ix_notifications_incident', ['incident_id'], unique=False)
        batch_op.create_index('ix_notifications_pending', ['sent_ms', 'id'], unique=False)

    # The defaults fill the rows that exist already; the columns keep none (the code always writes them).
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('escalation_policy', sa.String(length=32), server_default='', nullable=False))
        batch_op.add_column(sa.Column('escalation_step', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('tier', sa.String(length=16), server_default='', nullable=False))
        batch_op.add_column(sa.Column('next_deadline_ms', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.alter_column('escalation_policy', server_default=None)
        batch_op.alter_column('escalation_step', server_default=None)
        batch_op.alter_column('tier', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_column('next_deadline_ms')
        batch_op.drop_column('tier')
        batch_op.drop_column('escalation_step')
        batch_op.drop_column('escalation_policy')

    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_notifications_pending')
        batch_op.drop_index('ix_notifications_incident')

    op.drop_table('notifications')
