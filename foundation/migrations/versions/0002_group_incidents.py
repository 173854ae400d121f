"""Group incidents: one incident for a building or the street, with the devices it gathers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 08:38:28.078769
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The defaults fill the rows that exist already; the columns keep none (the code always writes them).
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scope', sa.String(length=100), server_default='', nullable=False))
        batch_op.add_column(sa.Column('members_json', sa.Text(), server_default='[]', nullable=False))
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.alter_column('scope', server_default=None)
        batch_op.alter_column('members_json', server_default=None)



def downgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_column('members_json')
        batch_op.drop_column('scope')

