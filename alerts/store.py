"""Incidents and their audit trail in SQL (SQLite by default, PostgreSQL in production), and the
rules' checkpoints: each stateful rule's snapshot as JSON, one row per rule (``alerts/service.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from alerts.incidents import AuditEntry, Incident, Severity, State
from devices.hierarchy import Location
from foundation.db import METADATA, BigId
from foundation.errors import NotFound, StaleIncident

incidents_table = Table(
    "incidents",
    METADATA,
    Column("id", String(32), primary_key=True),
    Column("key", String(160), nullable=False),
    Column("device_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("condition", String(64), nullable=False),
    Column("category", String(32), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("title", String(200), nullable=False),
    Column("detail", Text, nullable=False),
    Column("street_id", String(32), nullable=False),
    Column("area_id", String(64), nullable=False),
    Column("community_id", String(64), nullable=False),
    Column("building_id", String(64), nullable=False),
    Column("floor", Integer, nullable=True),
    Column("unit", String(16), nullable=False),
    Column("location_json", Text, nullable=False),
    Column("opened_ms", BigInteger, nullable=False),
    Column("first_event_ms", BigInteger, nullable=False),
    Column("last_event_ms", BigInteger, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("acknowledged_ms", BigInteger, nullable=True),
    Column("acknowledged_by", String(100), nullable=False),
    Column("closed_ms", BigInteger, nullable=True),
    Column("scope", String(100), nullable=False),
    Column("members_json", Text, nullable=False),
    Column("escalation_policy", String(32), nullable=False),
    Column("escalation_step", Integer, nullable=False),
    Column("tier", String(16), nullable=False),
    Column("next_deadline_ms", BigInteger, nullable=True),
    Column("flags_json", Text, nullable=False, server_default="[]"),
    Column("version", Integer, nullable=False),  # one more with each write (StaleIncident)
    Index("ix_incidents_state", "state"),
    Index("ix_incidents_key", "key"),
    Index("ix_incidents_building", "building_id"),
)



def incident_rows_table(name: str, *columns: Column[Any] | Index) -> Table:
    """A table of rows that hang off an incident (its audit trail, its notices): a row id of their own,
    then the incident's id, indexed (``ix_{name}_incident``) to read one incident's rows in order."""
    return Table(name, METADATA,
                 Column("id", BigId, primary_key=True, autoincrement=True),
                 Column("incident_id", String(32), nullable=False),
                 *columns,
                 Index(f"ix_{name}_incident", "incident_id"))


incident_audit_table = incident_rows_table(
    "incident_audit",
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_state", String(16), nullable=True),
    Column("to_state", String(16), nullable=False),
    Column("note", Text, nullable=False),
)

rule_state_table = Table(
    "rule_state",
    METADATA,
    Column("rule", String(100), primary_key=True),  # module.Class, e.g. smoke_detector.SuspectedFire
    Column("saved_ms", BigInteger, nullable=False),  # the engine's clock when it was written
    Column("state", Text, nullable=False),  # the rule's snapshot, JSON
)

ACTIVE_STATES = tuple(s.value for s in State if s.is_active)


class IncidentStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        # Built once: SQLAlchemy builds the column proxies of ``excluded`` afresh for every statement,
        # a few milliseconds that every alarm's commit paid twice.
        self._rule_state_upsert = self._build_upsert(rule_state_table, "rule")
        t = incidents_table
        self._checked_update = (update(t).where(and_(t.c.id == bindparam("b_id"), t.c.version == bindparam("b_version")))
                                .values({c.name: bindparam(c.name) for c in t.columns if c.name != "id"}))

    def transaction(self) -> AbstractContextManager[Connection]:
        return self._engine.begin()

    def save(self, incidents: Iterable[Incident], audit: Sequence[AuditEntry],
             conn: Connection | None = None) -> dict[str, int]:
        """Write the incidents and append the audit entries, in the caller's transaction or one of their own;
        return each incident's new version (by id).

        A new incident (version 0) is inserted; a stored one is updated only if the row still has the
        version it was read at: another instance's change since raises ``StaleIncident`` (naming the
        stored incidents of the write), and the caller's transaction is rolled back, to be tried again on
        fresh rows.
        """
        if conn is None:
            with self.transaction() as own:
                return self.save(incidents, audit, own)
        incidents = list(incidents)
        new = [{**_row(i), "version": 1} for i in incidents if i.version == 0]
        if new:
            conn.execute(incidents_table.insert(), new)
        stored = [i for i in incidents if i.version]
        if stored:  # one executemany; both drivers count its rows (supports_sane_multi_rowcount)
            done = conn.execute(self._checked_update, [{**_row(i), "b_id": i.id, "b_version": i.version,
                                                        "version": i.version + 1} for i in stored])
            if done.rowcount != len(stored):  # one or more moved meanwhile: the caller reads them all again
                raise StaleIncident([i.id for i in stored])
        if audit:
            conn.execute(incident_audit_table.insert(), [
                {"incident_id": a.incident_id, "at_ms": a.at_ms, "actor": a.actor, "action": a.action,
                 "from_state": a.from_state.value if a.from_state else None, "to_state": a.to_state.value,
                 "note": a.note}
                for a in audit
            ])
        return {i.id: i.version + 1 for i in incidents}

    def _build_upsert(self, table: Table, key: str):  # type: ignore[no-untyped-def]
        """INSERT … ON CONFLICT (key) DO UPDATE every other column, in this database's dialect."""
        insert = (postgresql if self._dialect == "postgresql" else sqlite).insert(table)
        updatable = {c.name: insert.excluded[c.name] for c in table.columns if c.name != key}
        return insert.on_conflict_do_update(index_elements=[key], set_=updatable)

    def active(self) -> list[Incident]:
        return self._select(incidents_table.c.state.in_(ACTIVE_STATES), limit=None)

    def list(self, states: Sequence[str] = (), building_id: str = "", limit: int = 200) -> list[Incident]:
        clauses = []
        if states:
            clauses.append(incidents_table.c.state.in_(list(states)))
        if building_id:
            clauses.append(incidents_table.c.building_id == building_id)
        return self._select(*clauses, limit=limit)

    def history(self, since_ms: int | None = None, until_ms: int | None = None, building_id: str = "",
                community_id: str = "", kind: str = "", severity: str = "", outcome: str = "", text: str = "",
                limit: int = 500) -> list[Incident]:
        """Ended incidents (closed, false alarm, merged) opened in [since, until), newest change first, by
        building, community, kind, severity, outcome (the end state) and words of their title or device."""
        t = incidents_table
        ended = [s.value for s in State if not s.is_active]
        clauses = [t.c.state.in_([outcome] if outcome in ended else ended)]
        if since_ms is not None:
            clauses.append(t.c.opened_ms >= since_ms)
        if until_ms is not None:
            clauses.append(t.c.opened_ms < until_ms)
        for column, value in ((t.c.building_id, building_id), (t.c.community_id, community_id), (t.c.kind, kind),
                              (t.c.severity, severity)):
            if value:
                clauses.append(column == value)
        if text:
            like = f"%{text.replace('%', '').replace('_', '')}%"
            clauses.append(t.c.title.like(like) | t.c.device_id.like(like) | t.c.id.like(like))
        return self._select(*clauses, limit=limit)

    def get_many(self, incident_ids: Iterable[str]) -> list[Incident]:
        ids = list(dict.fromkeys(incident_ids))
        out: list[Incident] = []
        for start in range(0, len(ids), 500):
            out.extend(self._select(incidents_table.c.id.in_(ids[start:start + 500]), limit=None))
        return out

    def get(self, incident_id: str) -> Incident:
        found = self._select(incidents_table.c.id == incident_id, limit=1)
        if not found:
            raise NotFound("incident", incident_id)
        return found[0]

    def audit(self, incident_id: str) -> list[AuditEntry]:
        t = incident_audit_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.incident_id == incident_id).order_by(t.c.id)).mappings().all()
        return [
            AuditEntry(r["incident_id"], r["at_ms"], r["actor"], r["action"],
                       State(r["from_state"]) if r["from_state"] else None, State(r["to_state"]), r["note"])
            for r in rows
        ]

    # -- the rules' checkpoints --

    def rule_states(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """Every rule's last snapshot: rule name → (when it was saved, the snapshot)."""
        t = rule_state_table
        with self._engine.connect() as conn:
            rows = conn.execute(select(t)).mappings().all()
        return {str(r["rule"]): (int(r["saved_ms"]), json.loads(str(r["state"]))) for r in rows}

    def save_rule_states(self, states: Mapping[str, str | None], saved_ms: int, conn: Connection | None = None) -> None:
        """Write rules' snapshots (already JSON); None deletes the rule's row (it has nothing to keep)."""
        if conn is None:
            with self.transaction() as own:
                return self.save_rule_states(states, saved_ms, own)
        t = rule_state_table
        gone = [rule for rule, state in states.items() if state is None]
        if gone:
            conn.execute(delete(t).where(t.c.rule.in_(gone)))
        rows = [{"rule": rule, "saved_ms": saved_ms, "state": state} for rule, state in states.items() if state is not None]
        if rows:
            conn.execute(self._rule_state_upsert, rows)

    def _select(self, *clauses, limit: int | None) -> list[Incident]:  # type: ignore[no-untyped-def]
        t = incidents_table
        q = select(t).where(*clauses).order_by(t.c.updated_ms.desc(), t.c.id)  # id: the same order on every database
        if limit is not None:
            q = q.limit(limit)
        with self._engine.connect() as conn:
            return [_incident(r) for r in conn.execute(q).mappings().all()]


def _row(i: Incident) -> dict[str, object]:
    loc = i.location
    return {
        "id": i.id, "key": i.key, "device_id": i.device_id, "kind": i.kind, "condition": i.condition,
        "category": i.category, "severity": i.severity.value, "state": i.state.value, "title": i.title,
        "detail": i.detail, "street_id": loc.street_id, "area_id": loc.area_id, "community_id": loc.community_id,
        "building_id": loc.building_id, "floor": loc.floor, "unit": loc.unit,
        "location_json": json.dumps(_location_dict(loc), ensure_ascii=False),
        "opened_ms": i.opened_ms, "first_event_ms": i.first_event_ms, "last_event_ms": i.last_event_ms,
        "updated_ms": i.updated_ms, "event_count": i.event_count, "acknowledged_ms": i.acknowledged_ms,
        "acknowledged_by": i.acknowledged_by, "closed_ms": i.closed_ms, "scope": i.scope,
        "members_json": json.dumps(list(i.members)), "escalation_policy": i.escalation_policy,
        "flags_json": json.dumps(list(i.flags), ensure_ascii=False),
        "escalation_step": i.escalation_step, "tier": i.tier, "next_deadline_ms": i.next_deadline_ms,
    }


def _location_dict(loc: Location) -> dict[str, object]:
    return {f: getattr(loc, f) for f in loc.__slots__}  # type: ignore[attr-defined]


def _incident(r: Mapping[str, object]) -> Incident:
    loc = Location(**json.loads(str(r["location_json"])))
    return Incident(
        id=str(r["id"]), key=str(r["key"]), device_id=str(r["device_id"]), kind=str(r["kind"]),
        condition=str(r["condition"]), category=str(r["category"]), severity=Severity(str(r["severity"])),
        state=State(str(r["state"])), title=str(r["title"]), detail=str(r["detail"]), location=loc,
        opened_ms=int(r["opened_ms"]), first_event_ms=int(r["first_event_ms"]),  # type: ignore[arg-type]
        last_event_ms=int(r["last_event_ms"]), updated_ms=int(r["updated_ms"]),  # type: ignore[arg-type]
        event_count=int(r["event_count"]), acknowledged_ms=r["acknowledged_ms"],  # type: ignore[arg-type]
        acknowledged_by=str(r["acknowledged_by"]), closed_ms=r["closed_ms"],  # type: ignore[arg-type]
        scope=str(r["scope"]), members=tuple(json.loads(str(r["members_json"]))),
        flags=tuple(json.loads(str(r.get("flags_json") or "[]"))),
        escalation_policy=str(r["escalation_policy"]), escalation_step=int(r["escalation_step"]),  # type: ignore[arg-type]
        tier=str(r["tier"]), next_deadline_ms=r["next_deadline_ms"],  # type: ignore[arg-type]
        version=int(r["version"]),  # type: ignore[call-overload]
    )
