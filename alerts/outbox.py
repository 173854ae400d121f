"""The notification outbox: what must be sent, kept in the same transaction as the incident change.

An incident opened or escalated and its notices commit together, so a crash between the
two cannot lose a notice; the dispatcher claims pending rows a batch at a time, sends them and marks
them sent (a crash between sending and marking sends one again: receivers see the same incident id
and step; with several instances the dispatcher's witness reads them back and marks them instead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    RowMapping,
    String,
    Text,
    select,
    text,
    update,
)

from alerts.escalation import Notice
from alerts.store import incident_rows_table

log = logging.getLogger(__name__)

# Plans the attempts to reach people (alerts/notify) in the notices' own transaction.
PlanAttempts = Callable[[Sequence[Notice], int, Connection], object]

CHANNEL_MQTT = "mqtt"
CHANNEL_WEBHOOK = "webhook"

notifications_table = incident_rows_table(
    "notifications",
    Column("created_ms", BigInteger, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("topic", String(300), nullable=False),
    Column("payload", Text, nullable=False),
    Column("step", Integer, nullable=False),
    Column("tier", String(16), nullable=False),
    Column("place_id", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("recipient", String(200), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("dispatch_id", String(64), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("sent_ms", BigInteger, nullable=True),
    Column("last_error", String(500), nullable=False),
    Index("ix_notifications_pending", "sent_ms", "id"),
)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    incident_id: str
    channel: str
    topic: str
    payload: str
    attempts: int
    recipient: str
    role: str
    tier: str
    step: int
    sent_ms: int | None
    dispatch_id: str
    place_id: str = ""
    created_ms: int = 0


class Outbox:
    def __init__(self, engine: Engine, webhook: bool = False, plan: PlanAttempts | None = None) -> None:
        self._engine = engine
        self._webhook = webhook
        self._plan = plan

    def add(self, notices: Sequence[Notice], now_ms: int, conn: Connection) -> None:
        if not notices:
            return
        rows = [_row(n, CHANNEL_MQTT, n.topic, now_ms) for n in notices]
        if self._webhook:  # the city platform gets every notice too, but never a drill's (devices/drill.py)
            rows += [_row(n, CHANNEL_WEBHOOK, "", now_ms) for n in notices if not n.drill]
        conn.execute(notifications_table.insert(), rows)
        if self._plan is not None:
            try:
                # In a savepoint: on PostgreSQL a failed statement aborts the whole transaction, and the alarm's
                # incident and notices in it could then never commit; only the plan is rolled back.
                with conn.begin_nested():
                    self._plan(notices, now_ms, conn)
            except Exception:  # the notices on MQTT and the webhook stand; the alarm is never held up by this
                log.exception("could not plan the attempts to reach people for incident=%s", notices[0].incident_id)

    def pending(self, limit: int = 500) -> list[OutboxRow]:
        t = notifications_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.sent_ms.is_(None)).order_by(t.c.id).limit(limit)).mappings().all()
        return [_outbox_row(r) for r in rows]

    def for_incident(self, incident_id: str) -> list[OutboxRow]:
        t = notifications_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.incident_id == incident_id).order_by(t.c.id)).mappings().all()
        return [_outbox_row(r) for r in rows]

    def dispatches_since(self, since_ms: int) -> list[OutboxRow]:
        """Micro fire station dispatches written at or after ``since_ms`` (what a restart must still time)."""
        t = notifications_table
        q = (select(t).where(t.c.dispatch_id != "", t.c.channel == CHANNEL_MQTT, t.c.created_ms >= since_ms)
             .order_by(t.c.id))
        with self._engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [_outbox_row(r) for r in rows]

    def dispatch(self, dispatch_id: str) -> OutboxRow | None:
        """The notice that dispatched a micro fire station under this id (None: no such dispatch)."""
        t = notifications_table
        incident_id = dispatch_id.rsplit("-", 1)[0]  # the id names its incident: the incident's index finds it
        q = (select(t).where(t.c.incident_id == incident_id, t.c.dispatch_id == dispatch_id,
                             t.c.channel == CHANNEL_MQTT).order_by(t.c.id).limit(1))
        with self._engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        return _outbox_row(row) if row is not None else None

    # A dispatcher that froze holding notices keeps them this long before the database cuts its session and the
    # next holder sends them (PostgreSQL's idle_in_transaction_session_timeout, for the claim's transaction only).
    CLAIM_HOLD_S = 60

    def has_pending(self, channel: str) -> bool:
        t = notifications_table
        with self._engine.connect() as conn:
            return conn.execute(select(t.c.id).where(t.c.sent_ms.is_(None), t.c.channel == channel)
                                .limit(1)).first() is not None

    @contextmanager
    def claim(self, channel: str, limit: int, skip: Collection[int] = ()) -> Iterator[Claim]:
        """Up to ``limit`` pending notices of ``channel``, oldest first, locked for sending, in one transaction
        that marks them (``Claim``: sent or failed, committed together when the block ends); none of ``skip``,
        and none another instance's dispatcher holds now.

        With several instances (foundation/leases.py) the row locks, not only the lease, keep a notice from
        going twice: a dispatcher that froze mid-send (a paused VM) still holds its batch's locks, and the
        next holder skips them (SKIP LOCKED) instead of sending them again; the frozen one sends and marks
        them when it wakes, or, frozen longer than CLAIM_HOLD_S, its session is cut, the locks fall and the
        notices go from the next holder. One killed between the broker's acknowledgements and its commit
        leaves its batch unmarked: the next holder's dispatcher reads those notices back from the broker first
        and marks them (``mark_witnessed``; alerts/dispatch.py), and every copy carries its ``notice_id``.
        No lease fence here: a notice the broker acknowledged is marked sent even if the role left meanwhile
        (unmarked, the next holder would send it again); the lock, not the role, is what keeps it one send.
        """
        t = notifications_table
        with self._engine.begin() as conn:
            q = select(t).where(t.c.sent_ms.is_(None), t.c.channel == channel).order_by(t.c.id).limit(limit)
            if skip:
                q = q.where(t.c.id.not_in(list(skip)))
            if conn.dialect.name == "postgresql":
                conn.execute(text(f"SET LOCAL idle_in_transaction_session_timeout = '{self.CLAIM_HOLD_S}s'"))
                q = q.with_for_update(skip_locked=True)
            yield Claim(conn, [_outbox_row(r) for r in conn.execute(q).mappings()])

    def mark_witnessed(self, ids: Sequence[int], now_ms: int) -> set[int]:
        """Notices the dispatcher's witness saw on the broker (alerts/dispatch.py): sent, whoever sent them.

        Never waits for a lock: a notice locked now (a dispatcher between its publish and its commit: this
        instance's own, whose commit marks it anyway, or a dead one's whose session PostgreSQL has not cut
        yet) is left and returned, for the witness to ask again."""
        t = notifications_table
        ids = list(dict.fromkeys(ids))
        with self._engine.begin() as conn:
            if conn.dialect.name != "postgresql":
                conn.execute(update(t).where(t.c.id.in_(ids), t.c.sent_ms.is_(None)).values(sent_ms=now_ms))
                return set()
            existing = set(conn.execute(select(t.c.id).where(t.c.id.in_(ids))).scalars())
            free = list(conn.execute(select(t.c.id).where(t.c.id.in_(ids)).with_for_update(skip_locked=True))
                        .scalars())
            if free:
                conn.execute(update(t).where(t.c.id.in_(free), t.c.sent_ms.is_(None)).values(sent_ms=now_ms))
        return existing - set(free)



class Claim:
    """Notices locked for sending (``Outbox.claim``): mark them sent, or failed, in the claim's transaction."""

    def __init__(self, conn: Connection, rows: list[OutboxRow]) -> None:
        self._conn, self.rows = conn, rows

    def sent(self, ids: Sequence[int], now_ms: int) -> None:
        if ids:
            self._conn.execute(update(notifications_table).where(notifications_table.c.id.in_(list(ids)))
                               .values(sent_ms=now_ms))

    def failed(self, ids: Sequence[int], error: str) -> None:
        t = notifications_table
        if ids:
            self._conn.execute(update(t).where(t.c.id.in_(list(ids))).values(attempts=t.c.attempts + 1,
                                                                             last_error=error[:500]))


def _row(n: Notice, channel: str, topic: str, now_ms: int) -> dict[str, object]:
    return {"incident_id": n.incident_id, "created_ms": now_ms, "channel": channel, "topic": topic,
            "payload": n.payload, "step": n.step, "tier": n.tier, "place_id": n.place_id, "role": n.role,
            "recipient": n.name, "phone": n.phone, "dispatch_id": n.dispatch_id, "attempts": 0, "sent_ms": None,
            "last_error": ""}


_OUTBOX_FIELDS = tuple(f.name for f in fields(OutboxRow))  # each one a column of the same name


def _outbox_row(r: RowMapping) -> OutboxRow:
    return OutboxRow(**{name: r[name] for name in _OUTBOX_FIELDS})
