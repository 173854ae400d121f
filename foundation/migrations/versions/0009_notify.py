"""Reaching people (issue 22): contact points, notification rules, every attempt, and the trail of edits.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 01:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('notify_attempts',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('incident_id', sa.String(length=32), nullable=False),
    sa.Column('attempt_key', sa.String(length=120), nullable=False),
    sa.Column('created_ms', sa.BigInteger(), nullable=False),
    sa.Column('due_ms', sa.BigInteger(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('tier', sa.String(length=16), nullable=False),
    sa.Column('place_id', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('person', sa.String(length=200), nullable=False),
    sa.Column('urgency', sa.String(length=16), nullable=False),
    sa.Column('rule_step', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=False),
    sa.Column('mention_mobile', sa.String(length=32), nullable=False),
    sa.Column('drill', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('provider_message_id', sa.String(length=200), nullable=False),
    sa.Column('tries', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(length=500), nullable=False),
    sa.Column('sent_ms', sa.BigInteger(), nullable=True),
    sa.Column('delivered_ms', sa.BigInteger(), nullable=True),
    sa.Column('answered_ms', sa.BigInteger(), nullable=True),
    sa.Column('answer', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('attempt_key')
    )
    with op.batch_alter_table('notify_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_notify_attempts_incident', ['incident_id'], unique=False)
        batch_op.create_index('ix_notify_attempts_due', ['status', 'due_ms'], unique=False)
        batch_op.create_index('ix_notify_attempts_person', ['person', 'channel', 'sent_ms'], unique=False)

    op.create_table('notify_contact_points',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('person', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('drill', sa.Boolean(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.Column('updated_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('person', 'kind', 'address', name='uq_notify_contact_points')
    )
    with op.batch_alter_table('notify_contact_points', schema=None) as batch_op:
        batch_op.create_index('ix_notify_contact_points_person', ['person'], unique=False)

    op.create_table('notify_rules',
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('urgency', sa.String(length=16), nullable=False),
    sa.Column('steps_json', sa.Text(), nullable=False),
    sa.Column('updated_ms', sa.BigInteger(), nullable=False),
    sa.Column('updated_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('role', 'urgency')
    )
    op.create_table('notify_changes',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('at_ms', sa.BigInteger(), nullable=False),
    sa.Column('actor', sa.String(length=100), nullable=False),
    sa.Column('what', sa.String(length=32), nullable=False),
    sa.Column('subject', sa.String(length=200), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('notify_changes')
    op.drop_table('notify_rules')
    with op.batch_alter_table('notify_contact_points', schema=None) as batch_op:
        batch_op.drop_index('ix_notify_contact_points_person')
    op.drop_table('notify_contact_points')
    with op.batch_alter_table('notify_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_notify_attempts_person')
        batch_op.drop_index('ix_notify_attempts_due')
        batch_op.drop_index('ix_notify_attempts_incident')
    op.drop_table('notify_attempts')
