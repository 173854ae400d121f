"""The access audit trail: who read a household's personal data, which login was slowed down, which
credential was refused an incident outside its station. One row per event, kept in the service's
database beside the accounts; admins read it on ``GET /api/access-events``.

The incidents' own audit trail (alerts/) stays where it is: this one is about people's data and
credentials, not about what happened to an alarm.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import BigInteger, Column, Engine, Index, String, Table, insert, select

from foundation.db import METADATA, BigId

log = logging.getLogger(__name__)


class AccessEvent(StrEnum):
    PERSONAL_DATA_READ = "personal_data_read"  # subject: the household (building-unit)
    LOGIN_DELAYED = "login_delayed"  # subject: the username or source that must wait; detail: how long
    STATION_REFUSED = "station_refused"  # subject: the incident a station-bound credential may not touch
    PASSWORD_RESET_FORCED = "password_reset_forced"  # subject: the account told to choose a new password


access_events_table = Table(
    "access_events", METADATA,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("event", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("source", String(64), nullable=False),
    Column("detail", String(400), nullable=False),
    Index("ix_access_events_at", "at_ms"),
)


@dataclass(frozen=True, slots=True)
class AccessRecord:
    id: int
    at_ms: int
    event: str
    actor: str
    subject: str
    source: str
    detail: str


class AccessAudit:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def record(self, event: AccessEvent, now_ms: int, *, actor: str, subjects: Sequence[str], source: str = "",
               detail: str = "") -> None:
        """One row per subject (a read of a building's households records each household)."""
        if not subjects:
            return
        rows = [{"at_ms": now_ms, "event": event.value, "actor": actor[:200], "subject": s[:200],
                 "source": source[:64], "detail": detail[:400]} for s in subjects]
        with self._engine.begin() as conn:
            conn.execute(insert(access_events_table), rows)
        log.info("access event=%s actor=%s subjects=%d source=%s %s", event.value, actor, len(rows), source, detail)

    def recent(self, limit: int = 200, event: str = "") -> list[AccessRecord]:
        t = access_events_table
        q = select(t).order_by(t.c.id.desc()).limit(limit)
        if event:
            q = q.where(t.c.event == event)
        with self._engine.connect() as conn:
            return [AccessRecord(**r) for r in conn.execute(q).mappings()]
