"""The initial schema: devices and their history, device credentials, incidents and their audit, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Written out here rather than imported from the table modules: a revision is history and
must build the same tables after the code moves on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# foundation.db.BigId (then wanli.db.BigId) as it is today: BIGINT in PostgreSQL, INTEGER (the rowid alias) in SQLite.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# Epoch milliseconds are BIGINT everywhere: a 32-bit column overflows 25 days after 1970.
EPOCH_MS = sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("street_id", sa.String(32), nullable=False),
        sa.Column("building_id", sa.String(64), nullable=False),
        sa.Column("floor", sa.Integer(), nullable=True),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("lifecycle", sa.String(16), nullable=False),
        sa.Column("registered_ms", EPOCH_MS, nullable=False),
        sa.Column("retired_ms", EPOCH_MS, nullable=True),
        sa.Column("last_seen_ms", EPOCH_MS, nullable=True),
        sa.Column("last_type", sa.String(32), nullable=True),
        sa.Column("battery_pct", sa.Float(), nullable=True),
        sa.Column("tampered", sa.Boolean(), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=True),
        sa.Column("seq_highest", sa.BigInteger(), nullable=True),
        sa.Column("seq_window", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_index("ix_devices_building", "devices", ["building_id"])
    op.create_index("ix_devices_kind", "devices", ["kind"])

    op.create_table(
        "device_history",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("at_ms", EPOCH_MS, nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_device_history_device", "device_history", ["device_id"])

    op.create_table(
        "device_credentials",
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("issued_ms", EPOCH_MS, nullable=False),
        sa.Column("revoked_ms", EPOCH_MS, nullable=True),
        sa.PrimaryKeyConstraint("device_id"),
    )

    op.create_table(
        "incidents",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("key", sa.String(160), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("condition", sa.String(64), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("street_id", sa.String(32), nullable=False),
        sa.Column("area_id", sa.String(64), nullable=False),
        sa.Column("community_id", sa.String(64), nullable=False),
        sa.Column("building_id", sa.String(64), nullable=False),
        sa.Column("floor", sa.Integer(), nullable=True),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("location_json", sa.Text(), nullable=False),
        sa.Column("opened_ms", EPOCH_MS, nullable=False),
        sa.Column("first_event_ms", EPOCH_MS, nullable=False),
        sa.Column("last_event_ms", EPOCH_MS, nullable=False),
        sa.Column("updated_ms", EPOCH_MS, nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
        sa.Column("acknowledged_ms", EPOCH_MS, nullable=True),
        sa.Column("acknowledged_by", sa.String(100), nullable=False),
        sa.Column("closed_ms", EPOCH_MS, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_incidents_state", "incidents", ["state"])
    op.create_index("ix_incidents_key", "incidents", ["key"])
    op.create_index("ix_incidents_building", "incidents", ["building_id"])

    op.create_table(
        "incident_audit",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(32), nullable=False),
        sa.Column("at_ms", EPOCH_MS, nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(16), nullable=True),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_incident_audit_incident", "incident_audit", ["incident_id"])

    op.create_table(
        "dead_letters",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("received_ms", EPOCH_MS, nullable=False),
        sa.Column("topic", sa.String(512), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.String(1000), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dead_letters_reason", "dead_letters", ["reason"])
    op.create_index("ix_dead_letters_device", "dead_letters", ["device_id"])


def downgrade() -> None:
    # Dropping a table drops its indexes.
    for table in ("dead_letters", "incident_audit", "incidents", "device_credentials", "device_history", "devices"):
        op.drop_table(table)
