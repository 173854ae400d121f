"""The notification tables: contact points, rules, every attempt, and the trail of operators' edits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    RowMapping,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    select,
    update,
)

from alerts.notify.base import Channel, ContactKind
from alerts.notify.rules import ContactPoint, NotifyRule, RuleStep
from alerts.store import incident_rows_table
from foundation.change_bus import NOTIFY_ROUTING, ChangeBus, LocalChangeBus
from foundation.db import METADATA, BigId

# Where an attempt is. queued → sending → sent → delivered → answered; failed; cancelled.
QUEUED, SENDING, SENT, DELIVERED, ANSWERED, FAILED, CANCELLED = (
    "queued", "sending", "sent", "delivered", "answered", "failed", "cancelled")
STANDBY = "standby"  # a stand-in contact point, queued only when the one before it failed
OPEN_STATUSES = (STANDBY, QUEUED)

notify_attempts_table = incident_rows_table(
    "notify_attempts",
    Column("attempt_key", String(120), nullable=False, unique=True),  # idempotency: one row per planned attempt
    Column("created_ms", BigInteger, nullable=False),
    Column("due_ms", BigInteger, nullable=False),
    Column("step", Integer, nullable=False),  # the escalation step whose notice planned it
    Column("tier", String(16), nullable=False),
    Column("place_id", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("person", String(200), nullable=False),
    Column("urgency", String(16), nullable=False),
    Column("rule_step", Integer, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("address", String(300), nullable=False),
    Column("mention_mobile", String(32), nullable=False),
    Column("drill", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("provider_message_id", String(200), nullable=False),
    Column("tries", Integer, nullable=False),
    Column("error", String(500), nullable=False),
    Column("sent_ms", BigInteger, nullable=True),
    Column("delivered_ms", BigInteger, nullable=True),
    Column("answered_ms", BigInteger, nullable=True),
    Column("answer", String(200), nullable=False),
    Index("ix_notify_attempts_due", "status", "due_ms"),
    Index("ix_notify_attempts_person", "person", "channel", "sent_ms"),
)

notify_contact_points_table = Table(
    "notify_contact_points", METADATA,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("person", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("address", String(300), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("drill", Boolean, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("updated_by", String(100), nullable=False),
    UniqueConstraint("person", "kind", "address", name="uq_notify_contact_points"),
    Index("ix_notify_contact_points_person", "person"),
)

notify_rules_table = Table(
    "notify_rules", METADATA,
    Column("role", String(32), primary_key=True),
    Column("urgency", String(16), primary_key=True),
    Column("steps_json", Text, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("updated_by", String(100), nullable=False),
)

notify_changes_table = Table(  # the trail of operators' edits to contact points and rules
    "notify_changes", METADATA,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("what", String(32), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("detail", Text, nullable=False),
)


@dataclass(frozen=True, slots=True)
class AttemptRow:
    id: int
    incident_id: str
    attempt_key: str
    created_ms: int
    due_ms: int
    step: int
    tier: str
    place_id: str
    role: str
    person: str
    urgency: str
    rule_step: int
    channel: str
    kind: str
    address: str
    mention_mobile: str
    drill: bool
    status: str
    provider: str
    provider_message_id: str
    tries: int
    error: str
    sent_ms: int | None
    delivered_ms: int | None
    answered_ms: int | None
    answer: str


_ATTEMPT_FIELDS = tuple(f.name for f in fields(AttemptRow))


def _attempt(r: RowMapping) -> AttemptRow:
    return AttemptRow(**{name: r[name] for name in _ATTEMPT_FIELDS})


@dataclass(frozen=True, slots=True)
class Change:
    at_ms: int
    actor: str
    what: str
    subject: str
    detail: str


class NotifyStore:
    CACHE_S = 5.0  # rules and contact points as the alarm path reads them: an edit elsewhere shows within this

    def __init__(self, engine: Engine, bus: ChangeBus | None = None) -> None:
        self._engine = engine
        self._cache: tuple[float, dict[tuple[str, str], NotifyRule], list[ContactPoint]] | None = None
        self.bus: ChangeBus = bus if bus is not None else LocalChangeBus()
        self.bus.subscribe(NOTIFY_ROUTING, self.forget)

    def forget(self, _changed: object = None) -> None:
        """Read rules and contact points again at the next use (another instance changed them)."""
        self._cache = None

    def routing(self) -> tuple[dict[tuple[str, str], NotifyRule], list[ContactPoint]]:
        """Every rule and contact point, read at most every CACHE_S (at once after an edit through this store):
        planning runs inside the alarm's own transaction and should not add two queries to each."""
        cached = self._cache
        if cached is None or time.monotonic() - cached[0] > self.CACHE_S:
            cached = self._cache = (time.monotonic(), self.rules(), self.contact_points())
        return cached[1], cached[2]

    # --- attempts
    def add_attempts(self, rows: Sequence[dict[str, object]], conn: Connection) -> int:
        """Insert planned attempts whose key is new (a notice planned again adds nothing); return how many."""
        if not rows:
            return 0
        t = notify_attempts_table
        keys = [str(r["attempt_key"]) for r in rows]
        have = set(conn.execute(select(t.c.attempt_key).where(t.c.attempt_key.in_(keys))).scalars())
        # Once per key within the batch too: a drill's contact stands in for every recipient of a step, and
        # would otherwise be planned once per notice under one key (the insert failed, and with it the plan).
        new = []
        for r in rows:
            if r["attempt_key"] not in have:
                have.add(str(r["attempt_key"]))
                new.append(r)
        if new:
            conn.execute(t.insert(), new)
        return len(new)

    def due(self, now_ms: int, limit: int = 500) -> list[AttemptRow]:
        t = notify_attempts_table
        q = select(t).where(t.c.status == QUEUED, t.c.due_ms <= now_ms).order_by(t.c.due_ms, t.c.id).limit(limit)
        with self._engine.connect() as conn:
            return [_attempt(r) for r in conn.execute(q).mappings()]

    def next_due_ms(self) -> int | None:
        t = notify_attempts_table
        with self._engine.connect() as conn:
            return conn.execute(select(t.c.due_ms).where(t.c.status == QUEUED).order_by(t.c.due_ms).limit(1)).scalar()

    def with_status(self, *statuses: str, provider: str | None = None) -> list[AttemptRow]:
        t = notify_attempts_table
        q = select(t).where(t.c.status.in_(statuses)).order_by(t.c.id)
        if provider is not None:
            q = q.where(t.c.provider == provider)
        with self._engine.connect() as conn:
            return [_attempt(r) for r in conn.execute(q).mappings()]

    def same_message(self, a: AttemptRow) -> list[AttemptRow]:
        """The attempts that went in the same message as this one (storm grouping), this one included."""
        t = notify_attempts_table
        q = (select(t).where(t.c.address == a.address, t.c.channel == a.channel, t.c.provider == a.provider,
                             t.c.provider_message_id == a.provider_message_id).order_by(t.c.id))
        if not a.provider_message_id:
            return [a]
        with self._engine.connect() as conn:
            return [_attempt(r) for r in conn.execute(q).mappings()]

    def for_incident(self, incident_id: str, conn: Connection | None = None) -> list[AttemptRow]:
        t = notify_attempts_table
        q = select(t).where(t.c.incident_id == incident_id).order_by(t.c.id)
        if conn is not None:
            return [_attempt(r) for r in conn.execute(q).mappings()]
        with self._engine.connect() as own:
            return [_attempt(r) for r in own.execute(q).mappings()]

    def by_key(self, attempt_key: str) -> AttemptRow | None:
        t = notify_attempts_table
        with self._engine.connect() as conn:
            r = conn.execute(select(t).where(t.c.attempt_key == attempt_key)).mappings().first()
        return _attempt(r) if r is not None else None

    def latest_to_address(self, address: str, channels: Sequence[str]) -> AttemptRow | None:
        """The attempt most recently sent to this address on these channels (an SMS reply answers it)."""
        t = notify_attempts_table
        q = (select(t).where(t.c.address == address, t.c.channel.in_(channels), t.c.sent_ms.is_not(None))
             .order_by(t.c.sent_ms.desc(), t.c.id.desc()).limit(1))
        with self._engine.connect() as conn:
            r = conn.execute(q).mappings().first()
        return _attempt(r) if r is not None else None

    def sent_since(self, person: str, channel: str, since_ms: int) -> int:
        """How many messages went to this person on this channel since then (grouped attempts count once)."""
        t = notify_attempts_table
        q = (select(t.c.provider_message_id).where(t.c.person == person, t.c.channel == channel,
                                                   t.c.sent_ms >= since_ms).distinct())
        with self._engine.connect() as conn:
            return len(conn.execute(q).all())

    def update(self, ids: Iterable[int], **values: object) -> None:
        ids = list(ids)
        if ids:
            with self._engine.begin() as conn:
                conn.execute(update(notify_attempts_table).where(notify_attempts_table.c.id.in_(ids)).values(**values))

    def claim(self, ids: Sequence[int], now_ms: int) -> list[int]:
        """Move queued attempts to sending (committed before any provider is called); return those moved."""
        t = notify_attempts_table
        claimed = []
        with self._engine.begin() as conn:
            for i in ids:
                res = conn.execute(update(t).where(t.c.id == i, t.c.status == QUEUED)
                                   .values(status=SENDING, tries=t.c.tries + 1))
                if res.rowcount:
                    claimed.append(i)
        return claimed

    def promote_standby(self, incident_id: str, person: str, channel: str, now_ms: int) -> AttemptRow | None:
        """The next stand-in contact point of this person on this channel, now queued (None: there is none)."""
        t = notify_attempts_table
        with self._engine.begin() as conn:
            r = conn.execute(select(t).where(t.c.incident_id == incident_id, t.c.person == person,
                                             t.c.channel == channel, t.c.status == STANDBY)
                             .order_by(t.c.id).limit(1)).mappings().first()
            if r is None:
                return None
            conn.execute(update(t).where(t.c.id == r["id"]).values(status=QUEUED, due_ms=max(now_ms, r["due_ms"])))
        return _attempt(r)

    def bring_forward(self, incident_id: str, person: str, now_ms: int) -> int:
        """The person's later attempts (the next rule step) due now: what failed is made up for at once."""
        t = notify_attempts_table
        with self._engine.begin() as conn:
            return conn.execute(update(t).where(t.c.incident_id == incident_id, t.c.person == person,
                                                t.c.status == QUEUED, t.c.due_ms > now_ms)
                                .values(due_ms=now_ms)).rowcount

    def close_person(self, incident_id: str, person: str, now_ms: int, note: str) -> int:
        """A person answered: their attempts not yet made are cancelled."""
        t = notify_attempts_table
        with self._engine.begin() as conn:
            return conn.execute(update(t).where(t.c.incident_id == incident_id, t.c.person == person,
                                                t.c.status.in_(OPEN_STATUSES))
                                .values(status=CANCELLED, error=note[:500])).rowcount

    # --- contact points
    def contact_points(self, person: str | None = None) -> list[ContactPoint]:
        t = notify_contact_points_table
        q = select(t).order_by(t.c.person, t.c.priority, t.c.id)
        if person is not None:
            q = q.where(t.c.person == person)
        with self._engine.connect() as conn:
            return [ContactPoint(r["person"], ContactKind(r["kind"]), r["address"], r["priority"], r["drill"])
                    for r in conn.execute(q).mappings()]

    def replace_contact_points(self, person: str, points: Sequence[ContactPoint], actor: str, now_ms: int) -> None:
        self._cache = None
        t = notify_contact_points_table
        with self._engine.begin() as conn:
            conn.execute(delete(t).where(t.c.person == person))
            if points:
                conn.execute(t.insert(), [{"person": person, "kind": p.kind.value, "address": p.address,
                                           "priority": p.priority, "drill": p.drill, "updated_ms": now_ms,
                                           "updated_by": actor} for p in points])
            detail = "; ".join(f"{p.kind.value}{' (演练)' if p.drill else ''} #{p.priority}" for p in points) or "（全部删除）"
            conn.execute(notify_changes_table.insert(), [{"at_ms": now_ms, "actor": actor, "what": "contact_points",
                                                          "subject": person, "detail": detail}])
            self.bus.announce(conn, NOTIFY_ROUTING, ["contact_points"])

    # --- rules
    def rules(self) -> dict[tuple[str, str], NotifyRule]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(notify_rules_table)).mappings().all()
        return {(r["role"], r["urgency"]): NotifyRule(r["role"], r["urgency"], steps_from_json(r["steps_json"]))
                for r in rows}

    def put_rule(self, rule: NotifyRule, actor: str, now_ms: int) -> None:
        self._cache = None
        t = notify_rules_table
        steps = json.dumps([s.as_dict() for s in rule.steps], separators=(",", ":"))
        with self._engine.begin() as conn:
            conn.execute(delete(t).where(t.c.role == rule.role, t.c.urgency == rule.urgency))
            conn.execute(t.insert(), [{"role": rule.role, "urgency": rule.urgency, "steps_json": steps,
                                       "updated_ms": now_ms, "updated_by": actor}])
            self.bus.announce(conn, NOTIFY_ROUTING, ["rules"])
            conn.execute(notify_changes_table.insert(), [{"at_ms": now_ms, "actor": actor, "what": "rule",
                                                          "subject": f"{rule.role}/{rule.urgency}", "detail": steps}])

    def changes(self, limit: int = 200) -> list[Change]:
        t = notify_changes_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.id.desc()).limit(limit)).mappings().all()
        return [Change(r["at_ms"], r["actor"], r["what"], r["subject"], r["detail"]) for r in rows]


def steps_from_json(text: str) -> tuple[RuleStep, ...]:
    return tuple(RuleStep(int(s["after_s"]), tuple(Channel(c) for c in s["channels"]), bool(s.get("first_only")))
                 for s in json.loads(text))
