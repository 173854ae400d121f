"""The alert engine's shell: rules → incidents → store → listeners.

Holds the active incidents by dedup key in memory (loaded from the store at start). Ingest
evaluates a batch inside an ``AlertBatch``: the incidents it changes are written in the
caller's transaction (together with the dead letters and the devices' sequence state) and
reach memory and the listeners only once that transaction has committed. Listeners (the
live screen) are never told of a change that could still be rolled back.

Rule state survives restarts. Every ``CHECKPOINT_EVERY_MS`` the ticker writes each stateful
rule's snapshot to the ``rule_state`` table (``checkpoint``, also for whoever stops the
engine); a rule that must lose nothing even to a crash (a dispatch being timed) is written
right after each batch that changed it. At start the rules get their snapshots back, and
dispatches the outbox holds that are newer than the last snapshot are expected again, so
a 1-minute / 3-minute deadline pending at a crash still fires.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection

from alerts import escalation
from alerts.escalation import Notice
from alerts.incidents import (
    Action,
    AuditEntry,
    Incident,
    Signal,
    new_incident_id,
    open_or_update,
    transition,
)
from alerts.outbox import Outbox
from alerts.rules import default_rules
from alerts.rules.base import Rule, RuleContext
from alerts.store import IncidentStore
from devices import fire_station as fs
from devices.hierarchy import Hierarchy, Location
from devices.reading import Reading
from wanli.errors import IllegalTransition

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IncidentChange:
    incident: Incident
    created: bool


Listener = Callable[[Sequence[IncidentChange]], None]
Locator = Callable[[str, str], Location]  # (device id, scope) → where the incident is


class AlertBatch:
    """The incidents one ingest batch opens or updates, pending until the caller's transaction commits."""

    def __init__(self, service: AlertService, now_ms: int) -> None:
        self._service = service
        self._now_ms = now_ms
        self.pending: dict[str, Incident] = {}  # by dedup key
        self.audit: list[AuditEntry] = []
        self.notices: list[Notice] = []
        self.created: set[str] = set()
        self.committed = False

    def evaluate(self, readings: Sequence[Reading]) -> None:
        """Hand each reading to the rules that watch its kind, and fold what they say into incidents."""
        svc = self._service
        signals: list[Signal] = []
        for reading in readings:
            if isinstance(reading.message, fs.DispatchStep):
                self._station_step(reading)
            for rule in svc.rules_for_message(reading.kind, type(reading.message)):
                signals.extend(rule.on_reading(reading, svc.ctx, self._now_ms))
        self.apply(signals)

    def _station_step(self, reading: Reading) -> None:
        """A micro fire station answering a dispatch moves the incident: accepted, left, on scene, finished.

        A step that does not fit the incident's state (an operator was quicker) is kept as a note.
        """
        msg = reading.message
        incident_id = msg.dispatch_id.rsplit("-", 1)[0]  # type: ignore[attr-defined]
        current = next((i for i in (*self.pending.values(), *self._service.active_incidents())
                        if i.id == incident_id), None)
        if current is None:
            return
        action = _STATION_ACTIONS[type(msg)]
        label = _STATION_LABELS[type(msg)]
        actor = f"微型消防站 {reading.device_id}"
        try:
            updated, entry = transition(current, action, actor, label, self._now_ms)
        except IllegalTransition:
            updated, entry = transition(current, Action.NOTE, actor, f"{label}（状态为 {current.state.value}）", self._now_ms)
        self.pending[updated.key] = updated
        self.audit.append(entry)

    def apply(self, signals: Sequence[Signal]) -> None:
        svc = self._service
        for signal in signals:
            current = self.pending.get(signal.key) or svc.active_by_key(signal.key)
            if signal.update_only and (current is None or not current.state.is_active):
                continue  # news for an incident a person has already closed
            location = svc.locate(signal.device_id, signal.scope)
            incident, entry = open_or_update(current, signal, location, self._now_ms, svc.new_id())
            if entry is not None:
                self.audit.append(entry)
            if current is None or not current.state.is_active:
                self.created.add(incident.id)
                incident = self._escalate(escalation.start(incident, svc.hierarchy, self._now_ms))
            elif entry is not None and entry.action == "escalate_severity":
                rescaled = escalation.rescale(incident, svc.hierarchy, self._now_ms)
                incident = self._escalate(rescaled) if rescaled else incident
            self.pending[signal.key] = incident

    def escalate_due(self) -> None:
        """Every incident whose acknowledgement deadline passed climbs a step (late ones at once after a restart)."""
        for incident in list(self._service.active_incidents()):
            if escalation.due(incident, self._now_ms):
                self.pending[incident.key] = self._escalate(escalation.advance(incident, self._service.hierarchy,
                                                                               self._now_ms))

    def _escalate(self, step: tuple[Incident, list[Notice], AuditEntry]) -> Incident:
        incident, notices, entry = step
        self.notices += notices
        self.audit.append(entry)
        return incident

    def write(self, conn: Connection) -> None:
        if self.pending:
            self._service.store.save(self.pending.values(), self.audit, conn)
        if self.notices and self._service.outbox is not None:
            self._service.outbox.add(self.notices, self._now_ms, conn)

    @property
    def changes(self) -> list[IncidentChange]:
        return [IncidentChange(i, i.id in self.created) for i in self.pending.values()]


_STATION_ACTIONS: dict[type, Action] = {
    fs.DispatchAck: Action.ACKNOWLEDGE, fs.DispatchDepart: Action.DISPATCH,
    fs.DispatchOnScene: Action.ARRIVE, fs.DispatchFinished: Action.RESOLVE,
}
_STATION_LABELS: dict[type, str] = {
    fs.DispatchAck: "确认出动", fs.DispatchDepart: "出发", fs.DispatchOnScene: "到达现场", fs.DispatchFinished: "处置完毕",
}


class AlertService:
    CHECKPOINT_EVERY_MS = 10_000  # rule state lost to a crash: at most this much (dispatches: nothing)
    RECOVER_DISPATCHES_MS = 10 * 60_000  # with no checkpoint at all, dispatches this recent are timed again

    def __init__(self, store: IncidentStore, locate: Locator, ctx: RuleContext, hierarchy: Hierarchy,
                 rules: Sequence[Rule] | None = None, outbox: Outbox | None = None,
                 on_notices: Callable[[], None] = lambda: None, new_id: Callable[[], str] = new_incident_id,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self.store = store
        self.hierarchy = hierarchy
        self.outbox = outbox
        self._on_notices = on_notices
        self.locate = locate
        self.ctx = ctx
        self.rules = list(default_rules() if rules is None else rules)
        self._by_kind: dict[str, list[Rule]] = {}
        self._by_message: dict[tuple[str, type], list[Rule]] = {}
        for rule in self.rules:
            for kind in rule.kinds:
                self._by_kind.setdefault(kind, []).append(rule)
        self.new_id = new_id
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self._active: dict[str, Incident] = {i.key: i for i in store.active()}
        self._next_checkpoint_ms = 0
        self._restore_rules(clock_ms())

    def _restore_rules(self, now_ms: int) -> None:
        """Give each rule its last snapshot back, and expect again the dispatches newer than it."""
        states = self.store.rule_states()
        for rule in self.rules:
            saved = states.get(rule.name)
            if saved is not None:
                rule.restore(saved[1])
        for rule in self.rules:
            expect = getattr(rule, "expect_dispatch", None)
            if expect is None or self.outbox is None:
                continue
            saved = states.get(rule.name)
            since = saved[0] if saved else now_ms - self.RECOVER_DISPATCHES_MS
            for row in self.outbox.dispatches_since(since):
                expect(row.dispatch_id, row.place_id, row.incident_id, row.created_ms)
        if states:
            log.info("alert rules restored from their checkpoints: %s", ", ".join(sorted(states)))

    def checkpoint(self, now_ms: int) -> None:
        """Write every stateful rule's snapshot (the ticker does, every CHECKPOINT_EVERY_MS; so may a stop)."""
        with self._lock:
            snapshots = {rule.name: rule.snapshot() for rule in self.rules}
            for rule in self.rules:
                rule.changed = False
        states = {name: None if snap is None else json.dumps(snap, separators=(",", ":"))
                  for name, snap in snapshots.items()}
        self.store.save_rule_states(states, now_ms)

    def _persist_urgent(self, now_ms: int) -> None:
        """Rules that must lose nothing to a crash: their snapshot, right after the batch that changed them."""
        urgent = [rule for rule in self.rules if rule.persist_at_once and rule.changed]
        if not urgent:
            return
        try:
            snaps = {rule.name: rule.snapshot() for rule in urgent}
            self.store.save_rule_states({n: None if s is None else json.dumps(s, separators=(",", ":"))
                                         for n, s in snaps.items()}, now_ms)
        except Exception:  # committed incidents stand; the next tick's checkpoint tries again
            log.exception("could not write the state of %s", ", ".join(r.name for r in urgent))
            return
        for rule in urgent:
            rule.changed = False

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def active_by_key(self, key: str) -> Incident | None:
        return self._active.get(key)

    def rules_for(self, kind: str) -> Sequence[Rule]:
        return self._by_kind.get(kind, ())

    def rules_for_message(self, kind: str, message_type: type) -> Sequence[Rule]:
        """The rules of this kind that act on this message type (``Rule.messages``), worked out once per type."""
        rules = self._by_message.get((kind, message_type))
        if rules is None:
            rules = self._by_message[(kind, message_type)] = [
                r for r in self.rules_for(kind) if r.messages is None or issubclass(message_type, r.messages)]
        return rules

    def active_incidents(self) -> list[Incident]:
        return list(self._active.values())

    def tick(self, now_ms: int) -> list[IncidentChange]:
        """Let every rule look at the time (silence, overdue steps), climb overdue escalations; store what they say."""
        with self.batch(now_ms) as alerts:
            alerts.apply([s for rule in self.rules for s in rule.on_tick(self.ctx, now_ms)])
            alerts.escalate_due()
            if alerts.pending:
                with self.store.transaction() as conn:
                    alerts.write(conn)
            alerts.committed = True
        if now_ms >= self._next_checkpoint_ms:
            self._next_checkpoint_ms = now_ms + self.CHECKPOINT_EVERY_MS
            self.checkpoint(now_ms)
        return alerts.changes

    @contextmanager
    def batch(self, now_ms: int) -> Iterator[AlertBatch]:
        """Evaluate readings under the lock; memory and listeners see the result only if ``committed`` is set."""
        with self._lock:
            alerts = AlertBatch(self, now_ms)
            yield alerts
            if alerts.committed:
                self._active.update(alerts.pending)
                self._expect_dispatches(alerts.notices, now_ms)
                self._persist_urgent(now_ms)
        if alerts.committed and alerts.notices:
            self._on_notices()
        if alerts.committed and alerts.pending:
            self._notify(alerts.changes)

    def _expect_dispatches(self, notices: Sequence[Notice], now_ms: int) -> None:
        """Tell the rules that time responses (a micro fire station's 1 and 3 minutes) that a dispatch went out."""
        for n in notices:
            if n.dispatch_id:
                for rule in self.rules:
                    expect = getattr(rule, "expect_dispatch", None)
                    if expect is not None:
                        expect(n.dispatch_id, n.place_id, n.incident_id, now_ms)

    def handle_batch(self, readings: Sequence[Reading], now_ms: int) -> list[IncidentChange]:
        """Evaluate and store readings in a transaction of their own (for callers outside ingest)."""
        with self.batch(now_ms) as alerts:
            alerts.evaluate(readings)
            with self.store.transaction() as conn:
                alerts.write(conn)
            alerts.committed = True
        return alerts.changes

    def act(self, incident_id: str, action: Action, actor: str, note: str, now_ms: int) -> Incident:
        """A person's action on an incident; raises NotFound or IllegalTransition."""
        with self._lock:
            current = next((i for i in self._active.values() if i.id == incident_id), None) or self.store.get(incident_id)
            updated, entry = transition(current, action, actor, note, now_ms)
            with self.store.transaction() as conn:
                self.store.save([updated], [entry], conn)
            if updated.state.is_active:
                self._active[updated.key] = updated
            elif self._active.get(updated.key, updated).id == updated.id:
                self._active.pop(updated.key, None)
        self._notify([IncidentChange(updated, False)])
        return updated

    def response_times(self) -> list[dict[str, object]]:
        """Every micro fire station dispatch the rules remember: seconds to acknowledge and to arrive."""
        with self._lock:
            return [row for rule in self.rules if hasattr(rule, "response_times") for row in rule.response_times()]

    def active(self) -> list[Incident]:
        with self._lock:
            return sorted(self._active.values(), key=lambda i: i.updated_ms, reverse=True)

    def _notify(self, changes: Sequence[IncidentChange]) -> None:
        for listener in self._listeners:
            try:
                listener(changes)
            except Exception:  # a broken screen must never stop alerting
                log.exception("incident listener failed")
