"""The dead-letter store: every message ingest could not accept, with its raw bytes and reason.

Nothing rejected is dropped: maintainers list these through the API, counted per reason.
Messages from devices that are not registered are kept here too, under the reason
``unregistered_device`` (the quarantine), and never reach the alert engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Connection, Engine, Index, Integer, LargeBinary, String, Table, func, select

from wanli.db import METADATA, BigId

KEEP_BYTES = 65_536
QUARANTINE_REASONS = ("unregistered_device", "retired_device", "kind_mismatch")  # an oversized payload is kept truncated; its real size is recorded

dead_letters_table = Table(
    "dead_letters",
    METADATA,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("received_ms", BigInteger, nullable=False),
    Column("topic", String(512), nullable=False),
    Column("device_id", String(64), nullable=False, default=""),
    Column("reason", String(32), nullable=False),
    Column("detail", String(1000), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("payload_size", Integer, nullable=False),
    Index("ix_dead_letters_reason", "reason"),
    Index("ix_dead_letters_device", "device_id"),
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_ms: int
    topic: str
    device_id: str
    reason: str
    detail: str
    payload: bytes
    payload_size: int
    id: int | None = None


class DeadLetterStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add_batch(self, letters: Sequence[DeadLetter], conn: Connection | None = None) -> None:
        """Keep the letters, in the caller's transaction if one is given."""
        if not letters:
            return
        rows = [
            {
                "received_ms": d.received_ms, "topic": _text(d.topic, 512), "device_id": _text(d.device_id, 64),
                "reason": d.reason, "detail": _text(d.detail, 1000), "payload": d.payload[:KEEP_BYTES],
                "payload_size": d.payload_size,
            }
            for d in letters
        ]
        if conn is not None:
            conn.execute(dead_letters_table.insert(), rows)
            return
        with self._engine.begin() as own:
            own.execute(dead_letters_table.insert(), rows)

    def list(self, reason: str = "", device_id: str = "", limit: int = 100, before_id: int | None = None) -> list[DeadLetter]:
        t = dead_letters_table
        q = select(t).order_by(t.c.id.desc()).limit(limit)
        if reason:
            q = q.where(t.c.reason == reason)
        if device_id:
            q = q.where(t.c.device_id == device_id)
        if before_id is not None:
            q = q.where(t.c.id < before_id)
        with self._engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            DeadLetter(r["received_ms"], r["topic"], r["device_id"], r["reason"], r["detail"], bytes(r["payload"]),
                       r["payload_size"], r["id"])
            for r in rows
        ]

    def quarantined(self, limit: int = 500) -> list[dict[str, object]]:
        """Devices whose messages are held because they are not (or no longer) registered, most recent first."""
        t = dead_letters_table
        q = (
            select(t.c.device_id, t.c.reason, func.min(t.c.topic).label("topic"), func.count().label("messages"),
                   func.min(t.c.received_ms).label("first_ms"), func.max(t.c.received_ms).label("last_ms"))
            .where(t.c.reason.in_(QUARANTINE_REASONS))
            .group_by(t.c.device_id, t.c.reason)
            .order_by(func.max(t.c.received_ms).desc())
            .limit(limit)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [
            {"device_id": r["device_id"], "reason": r["reason"], "kind": _kind_of(r["topic"]), "messages": r["messages"],
             "first_seen_at": datetime.fromtimestamp(r["first_ms"] / 1000, UTC),
             "last_seen_at": datetime.fromtimestamp(r["last_ms"] / 1000, UTC)}
            for r in rows
        ]

    def counts(self) -> dict[str, int]:
        t = dead_letters_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.c.reason, func.count()).group_by(t.c.reason)).all()
        return {reason: n for reason, n in rows}


def _kind_of(topic: str) -> str:
    parts = topic.split("/")
    return parts[3] if len(parts) == 6 else ""


def _text(value: str, limit: int) -> str:
    """Text a database will take whatever arrived: PostgreSQL refuses NUL characters (shown as U+2400 ␀)."""
    return value[:limit].replace("\x00", "\u2400")
