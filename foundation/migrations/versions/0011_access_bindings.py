"""Access: accounts and tokens bound to micro fire stations, an admin's forced password reset, and the
access audit trail (personal data read, logins slowed down, station refusals).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 01:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stations', sa.String(length=400), server_default='', nullable=False))
        batch_op.add_column(sa.Column('must_change_password', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stations', sa.String(length=400), server_default='', nullable=False))
    # The defaults fill the rows there are; new rows always say (as the tables declare them)
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('stations', server_default=None)
        batch_op.alter_column('must_change_password', server_default=None)
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.alter_column('stations', server_default=None)
    op.create_table(
        'access_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('at_ms', sa.BigInteger(), nullable=False),
        sa.Column('event', sa.String(length=40), nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('subject', sa.String(length=200), nullable=False),
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.Column('detail', sa.String(length=400), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('access_events', schema=None) as batch_op:
        batch_op.create_index('ix_access_events_at', ['at_ms'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('access_events', schema=None) as batch_op:
        batch_op.drop_index('ix_access_events_at')
    op.drop_table('access_events')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('stations')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('must_change_password')
        batch_op.drop_column('stations')
