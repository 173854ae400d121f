"""The dead-letter store: every message ingest could not accept, with its raw bytes and reason.

Nothing rejected goes uncounted: maintainers list these through the API, counted per reason.
Messages from devices that are not registered are kept here too, under the reason
``unregistered_device`` (the quarantine), and never reach the alert engine.

The store is bounded (``DeadLetterBounds``): ``prune`` deletes letters older than the age
limit, then the oldest until the rows fit the byte limit, a few hundred rows a
transaction so that no alarm's commit waits long behind it. What is pruned, and what the
rate limits only counted and never stored (``count_unstored``), is added to the
``dead_letter_counts`` table: ``counts()`` per reason stays the count of every letter ever
rejected.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (BigInteger, Column, Connection, Engine, Index, Integer, LargeBinary, String, Table, delete, func,
                        select)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from foundation.db import METADATA, BigId

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


# Letters counted but not (or no longer) in dead_letters: pruned, or never stored by the rate limits.
dead_letter_counts_table = Table(
    "dead_letter_counts",
    METADATA,
    Column("reason", String(32), primary_key=True),
    Column("letters", BigInteger, nullable=False),
)

ROW_OVERHEAD_BYTES = 100  # a row's id, times, reason and index entries, roughly


@dataclass(frozen=True, slots=True)
class DeadLetterBounds:
    max_bytes: int = 256 * 1024 * 1024  # payloads, details and topics of the rows kept
    max_age_ms: int = 30 * 86_400_000
    prune_batch_rows: int = 500  # rows deleted per transaction

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_age_ms < 1 or self.prune_batch_rows < 1:
            raise ValueError("dead-letter bounds must be positive")


@dataclass(frozen=True, slots=True)
class PruneResult:
    rows: int
    bytes: int
    by_reason: dict[str, int]
    stored_bytes: int  # what the rows kept hold afterwards


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
        """Letters per reason, ever: the rows kept, plus those pruned or never stored."""
        t, c = dead_letters_table, dead_letter_counts_table
        with self._engine.connect() as conn:
            kept = conn.execute(select(t.c.reason, func.count()).group_by(t.c.reason)).all()
            gone = conn.execute(select(c.c.reason, c.c.letters)).all()
        total: Counter[str] = Counter()
        for reason, n in (*kept, *gone):
            total[reason] += n
        return {reason: n for reason, n in total.items() if n}

    def count_unstored(self, by_reason: Mapping[str, int], conn: Connection | None = None) -> None:
        """Add letters that were counted but not stored (the rate limits' sampling), in the caller's transaction if given."""
        by_reason = {r: n for r, n in by_reason.items() if n > 0}
        if not by_reason:
            return
        if conn is not None:
            _add_counts(conn, by_reason)
            return
        with self._engine.begin() as own:
            _add_counts(own, by_reason)

    def stored_bytes(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.sum(_row_bytes()), 0))).scalar_one())

    def prune(self, now_ms: int, bounds: DeadLetterBounds) -> PruneResult:
        """Delete letters past the age limit, then the oldest past the byte limit, in small transactions.

        Past the byte limit it deletes down to 90 % of it, so that a steady trickle does not
        prune a few rows on every call.
        """
        t = dead_letters_table
        pruned: Counter[str] = Counter()
        pruned_bytes = 0
        cutoff = now_ms - bounds.max_age_ms
        while True:  # by age: the oldest ids first, received_ms grows with id but is checked per row
            n, b = self._delete_batch(select(t.c.id, t.c.reason, _row_bytes().label("bytes"))
                                      .where(t.c.received_ms < cutoff).order_by(t.c.id).limit(bounds.prune_batch_rows),
                                      pruned)
            pruned_bytes += b
            if n < bounds.prune_batch_rows:
                break
        stored = self.stored_bytes()
        if stored > bounds.max_bytes:
            target = bounds.max_bytes * 9 // 10
            while stored > target:
                n, b = self._delete_batch(select(t.c.id, t.c.reason, _row_bytes().label("bytes"))
                                          .order_by(t.c.id).limit(bounds.prune_batch_rows), pruned,
                                          enough_bytes=stored - target)
                if not n:
                    break
                stored -= b
                pruned_bytes += b
        return PruneResult(sum(pruned.values()), pruned_bytes, dict(pruned), stored)

    def _delete_batch(self, query: object, pruned: Counter[str], enough_bytes: int | None = None) -> tuple[int, int]:
        """Delete the rows ``query`` selects (id, reason, bytes), or only as many of the first as free ``enough_bytes``."""
        t = dead_letters_table
        with self._engine.begin() as conn:
            rows = conn.execute(query).all()  # type: ignore[call-overload]
            if enough_bytes is not None:
                freed = 0
                for i, r in enumerate(rows):
                    freed += int(r.bytes)
                    if freed >= enough_bytes:
                        rows = rows[:i + 1]
                        break
            if not rows:
                return 0, 0
            conn.execute(delete(t).where(t.c.id.in_([r.id for r in rows])))
            by_reason = Counter(r.reason for r in rows)
            _add_counts(conn, by_reason)
        pruned.update(by_reason)
        return len(rows), sum(int(r.bytes) for r in rows)


def _row_bytes():  # type: ignore[no-untyped-def]
    t = dead_letters_table
    return func.length(t.c.payload) + func.length(t.c.detail) + func.length(t.c.topic) + ROW_OVERHEAD_BYTES


def _add_counts(conn: Connection, by_reason: Mapping[str, int]) -> None:
    c = dead_letter_counts_table
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for reason, n in sorted(by_reason.items()):
        stmt = insert(c).values(reason=reason, letters=n)
        conn.execute(stmt.on_conflict_do_update(index_elements=[c.c.reason], set_={"letters": c.c.letters + n}))


def _kind_of(topic: str) -> str:
    parts = topic.split("/")
    return parts[3] if len(parts) == 6 else ""


def _text(value: str, limit: int) -> str:
    """Text a database will take whatever arrived: PostgreSQL refuses NUL characters (shown as U+2400 ␀)."""
    return value[:limit].replace("\x00", "\u2400")
