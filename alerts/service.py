"""The alert engine's shell: rules → incidents → store → listeners.

Holds the active incidents by dedup key in memory (loaded from the store at start). Ingest
evaluates a batch inside an ``AlertBatch``: the incidents it changes are written in the
caller's transaction (together with the dead letters and the devices' sequence state) and
reach memory and the listeners only once that transaction has committed. Listeners (the
live screen) are never told of a change that could still be rolled back.

Lock order (docs/reliability.md, "Lock order"): the engine's lock comes after the registry's
(ingest's unit of work holds that one and takes this one for the rules) and before the
database's; nothing under it asks for the registry's. Listeners are told outside it (and
outside the registry's, for ingest: ``announce``).

Rule state survives restarts. Every ``CHECKPOINT_EVERY_MS`` the ticker writes each stateful
rule's snapshot to the ``rule_state`` table (``checkpoint``, also for whoever stops the
engine); a rule that must lose nothing even to a crash (a dispatch being timed) is written
right after each batch that changed it. At start the rules get their snapshots back, and
dispatches the outbox holds that are newer than the last snapshot are expected again, so
a 1-minute / 3-minute deadline pending at a crash still fires.

A micro fire station answers a dispatch over MQTT (its device topic) or through the API (its
app, or an operator relaying its call: ``answer_dispatch``). Both go through the same step:
the incident moves and ``DispatchResponse`` times the answer, but only when the dispatch went
to that station. A station answering somebody else's dispatch moves nothing: the API refuses
it (``Conflict``, 409); over MQTT the incident's trail keeps it as a note saying why, and a
warning is logged.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection

from alerts import escalation
from alerts.context import ReadingContext
from alerts.escalation import Notice, stand_down_notices
from alerts.incidents import (
    Action,
    AuditEntry,
    Incident,
    Signal,
    State,
    clear_system,
    follow_group,
    members_of,
    merge_into,
    new_incident_id,
    open_or_update,
    split_member,
    stand_down_breach,
    transition,
)
from alerts.outbox import Outbox
from alerts.policies import PolicySet
from alerts.rules import default_rules
from alerts.rules.base import Rule, RuleContext
from alerts.rules.hearing import hear
from alerts.store import IncidentStore
from alerts.system_faults import SYSTEM_CATEGORY
from devices.hierarchy import Hierarchy, Location
from devices.catalog import KINDS
from devices.messages import DispatchAnswer
from devices.reading import Reading
from devices.registry import DeviceRecord
from devices.topics import MessageClass
from foundation.change_bus import INCIDENTS, ChangeBus, LocalChangeBus
from foundation.errors import Conflict, IllegalTransition, Invalid, NotFound, StaleIncident
from foundation.service_clock import ClockMs, wall_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IncidentChange:
    incident: Incident
    created: bool


Listener = Callable[[Sequence[IncidentChange]], None]
Locator = Callable[[str, str], Location]  # (device id, scope) → where the incident is


class AlertBatch:
    """The incidents one ingest batch opens or updates, pending until the caller's transaction commits."""

    def __init__(self, service: AlertService, now_ms: int,
                 fences: Sequence[Callable[[Connection], None]] = ()) -> None:
        self._service = service
        self._now_ms = now_ms
        self._fences = fences  # the roles this batch writes for (foundation/leases.py): checked in its transaction
        self.pending: dict[str, Incident] = {}  # by dedup key
        self.audit: list[AuditEntry] = []
        self.notices: list[Notice] = []
        self.created: set[str] = set()
        self.committed = False
        # True: the caller tells the dispatcher and the listeners (``AlertService.announce``) once it has let its
        # own locks go (ingest's unit of work holds the registry's); False: the batch does, on leaving the lock.
        self.announce_later = False

    def evaluate(self, readings: Sequence[Reading]) -> None:
        """Hand each reading to the rules that watch its kind and can be changed by it (``alerts/rules/hearing.py``:
        a heartbeat inside every bound only notes the device heard), and fold what they say into incidents."""
        svc = self._service
        # the reading's own device placed from the registration it carries: no second registry lookup
        hearing = svc.reading_context() if svc.reading_context is not None else None
        signals = hear(readings, svc.rules_for_message, svc.ctx if hearing is None else hearing, self._now_ms,
                       before=(DispatchAnswer, self._station_step), heard=None if hearing is None else hearing.hear)
        # the registrations, for locating the signals' incidents: built only when a rule said something (most
        # batches are heartbeats that say nothing, and this ran over every reading of every batch)
        registered = {r.device_id: r.registration for r in readings if r.registration is not None} if signals else {}
        self.apply(signals, registered)

    def answer(self, reading: Reading, by: str) -> Incident:
        """A station's answer through the API (``by``: the caller): the incident moves and the rules that
        time answers hear it, as over MQTT. The dead-man timers do not: the app is not the duty terminal."""
        incident = self._station_step(reading, by)
        if incident is None:  # the caller checked the dispatch and found its incident active
            raise NotFound("incident", reading.message.dispatch_id.rsplit("-", 1)[0])  # type: ignore[attr-defined]
        svc = self._service
        signals = [s for rule in svc.rules_for_message(reading.kind, type(reading.message)) if rule.messages is not None
                   for s in rule.on_reading(reading, svc.ctx, self._now_ms)]
        self.apply(signals)
        return self.pending.get(incident.key, incident)

    def _station_step(self, reading: Reading, by: str = "") -> Incident | None:
        """A micro fire station answering its dispatch moves the incident: accepted, left, on scene, finished.

        A step that does not fit the incident's state (an operator was quicker) is kept as a note. A
        station answering a dispatch that went to another station (or to none) moves nothing: its
        step is kept as a note saying so, on the incident its dispatch id names if that is active.
        """
        msg: DispatchAnswer = reading.message  # type: ignore[assignment]
        station = reading.device_id
        label = msg.STEP_ZH
        kind = KINDS.get(reading.kind)
        actor = f"{kind.label_zh if kind else reading.kind} {station}" + (f"（{by}）" if by else "")
        found = self._service.dispatched(msg.dispatch_id)
        refusal = refuse_answer(msg.dispatch_id, station, found)
        incident_id = found[1] if found else msg.dispatch_id.rsplit("-", 1)[0]
        current = next((i for i in (*self.pending.values(), *self._service.active_incidents()) if i.id == incident_id),
                       None)
        if refusal:
            log.warning("station step refused device=%s dispatch=%s step=%s: %s", station, msg.dispatch_id, msg.type,
                        refusal)
            if current is not None:
                _, entry = transition(current, Action.NOTE, actor, f"{label}（未采纳：{refusal}）", self._now_ms)
                self.audit.append(entry)
                self.pending[current.key] = current
            return None
        if current is None:
            return None
        action = Action(msg.ANSWERS)
        try:
            updated, entry = transition(current, action, actor, label, self._now_ms)
        except IllegalTransition:
            updated, entry = transition(current, Action.NOTE, actor, f"{label}（状态为 {current.state.value}）", self._now_ms)
        self.pending[updated.key] = updated
        self.audit.append(entry)
        return updated

    def apply(self, signals: Sequence[Signal], registered: Mapping[str, DeviceRecord] | None = None) -> None:
        """Fold signals into incidents. ``registered``: registrations the readings carried (``Reading.registration``):
        a signal of such a device without a scope is located from it, not by asking the registry again."""
        svc = self._service
        for signal in signals:
            current = self.pending.get(signal.key) or svc.active_by_key(signal.key)
            if signal.update_only and (current is None or not current.state.is_active):
                continue  # news for an incident a person has already closed
            rec = registered.get(signal.device_id) if registered and not signal.scope else None
            location = (svc.locate(signal.device_id, signal.scope) if rec is None
                        else svc.hierarchy.locate(rec.building_id, rec.floor, rec.unit))
            incident, entry = open_or_update(current, signal, location, self._now_ms, svc.new_id())
            if entry is not None:
                self.audit.append(entry)
            if current is None or not current.state.is_active:
                self.created.add(incident.id)
                incident = self._escalate(escalation.start(incident, svc.hierarchy, self._now_ms, svc.policies))
            elif entry is not None and entry.action == "escalate_severity":
                rescaled = escalation.rescale(incident, svc.hierarchy, self._now_ms, svc.policies)
                incident = self._escalate(rescaled) if rescaled else incident
            self.pending[signal.key] = incident

    def escalate_due(self) -> None:
        """Every incident whose acknowledgement deadline passed climbs a step (late ones at once after a restart)."""
        for incident in list(self._service.active_incidents()):
            if escalation.due(incident, self._now_ms):
                self.pending[incident.key] = self._escalate(escalation.advance(incident, self._service.hierarchy,
                                                                               self._now_ms, self._service.policies))

    def _escalate(self, step: tuple[Incident, list[Notice], AuditEntry]) -> Incident:
        incident, notices, entry = step
        self.notices += notices
        self.audit.append(entry)
        return incident

    def write(self, conn: Connection) -> int:
        """Write the incidents and their audit, and queue their notices in the outbox, in the caller's
        transaction (the fences checked first); return how many notices were queued."""
        for fence in self._fences:
            fence(conn)
        svc = self._service
        if self.pending:
            versions = svc.store.save(self.pending.values(), self.audit, conn)
            self.pending = {k: replace(i, version=versions[i.id]) for k, i in self.pending.items()}
            svc.bus.announce(conn, INCIDENTS, [i.id for i in self.pending.values()])
        if self.notices and svc.outbox is not None:
            svc.outbox.add(self.notices, self._now_ms, conn)
            return len(self.notices)
        return 0

    def commit_alone(self) -> None:
        """Write the batch in a transaction of its own (none when nothing changed) and mark it committed: for the
        callers outside ingest, whose unit of work (``ingest/unit_of_work.py``) writes its batch in its own."""
        if self.pending or self.notices:
            with self._service.store.transaction() as conn:
                self.write(conn)
        self.committed = True

    @property
    def changes(self) -> list[IncidentChange]:
        return [IncidentChange(i, i.id in self.created) for i in self.pending.values()]


def _answers() -> dict[Action, tuple[str, type[DispatchAnswer]]]:
    """Each incident action a dispatch can be answered with, and the kind and message that answer it (the
    kinds' contracts declare them: ``DispatchAnswer``)."""
    found: dict[Action, tuple[str, type[DispatchAnswer]]] = {}
    for kind in KINDS.values():
        for message in kind.messages:
            if issubclass(message, DispatchAnswer):
                found[Action(message.ANSWERS)] = (kind.name, message)
    return found


_ANSWERS = _answers()


def refuse_answer(dispatch_id: str, station_id: str, dispatched: tuple[str, str] | None,
                  incident_id: str = "") -> str | None:
    """Why a station may not answer a dispatch (None: it may). ``dispatched``: where the dispatch went,
    (station, incident); ``incident_id``: the incident the answer is about, when it says."""
    if dispatched is None:
        return f"派单 {dispatch_id} 不存在（no such dispatch）"
    if dispatched[0] != station_id:
        return f"派单 {dispatch_id} 派给的是 {dispatched[0]}，不是 {station_id}（dispatched to another station）"
    if incident_id and dispatched[1] != incident_id:
        return f"派单 {dispatch_id} 不属于事件 {incident_id}（the dispatch is for another incident）"
    return None


URGENT_DELTA = "+since-checkpoint"  # the row of a rule's urgent delta, beside its checkpoint's (Rule.urgent_is_delta)


class AlertService:
    CHECKPOINT_EVERY_MS = 10_000  # rule state lost to a crash: at most this much (dispatches: nothing)
    REMEMBER_DISPATCHES = 5_000  # who was dispatched, kept in memory; older ones are asked of the outbox
    RECOVER_DISPATCHES_MS = 10 * 60_000  # with no checkpoint at all, dispatches this recent are timed again

    def __init__(self, store: IncidentStore, locate: Locator, ctx: RuleContext, hierarchy: Hierarchy,
                 rules: Sequence[Rule] | None = None, outbox: Outbox | None = None,
                 on_notices: Callable[[], None] = lambda: None, new_id: Callable[[], str] = new_incident_id,
                 clock_ms: ClockMs = wall_ms,
                 bus: ChangeBus | None = None, policies: PolicySet | None = None) -> None:
        self.store = store
        self.bus: ChangeBus = bus if bus is not None else LocalChangeBus()
        # The escalation policies in force (alerts/policies.py); ``apply_policies`` swaps them whole.
        self.policies: PolicySet = policies or escalation.DEFAULT_POLICIES
        self.hierarchy = hierarchy
        self.outbox = outbox
        self._on_notices = on_notices
        self.locate = locate
        self.ctx = ctx
        # A batch's context that places each reading's device from the reading (RegistryContext.reading_context);
        # None: the context cannot (a test's), and is used as it is.
        self.reading_context: Callable[[], ReadingContext] | None = getattr(ctx, "reading_context", None)
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
        self._dispatched: dict[str, tuple[str, str]] = {}  # dispatch id → (station, incident id), oldest first
        self._restore_rules(clock_ms())

    def _restore_rules(self, now_ms: int) -> None:
        """Give each rule its last snapshot back, and expect again the dispatches newer than it."""
        states = self.store.rule_states()
        for rule in self.rules:
            saved = states.get(rule.name)
            if saved is not None:
                rule.restore(saved[1])
            urgent = states.get(rule.name + URGENT_DELTA) if rule.urgent_is_delta else None
            if urgent is not None:
                rule.restore_urgent(urgent[1])
        for rule in self.rules:
            expect = getattr(rule, "expect_dispatch", None)
            if expect is None or self.outbox is None:
                continue
            saved = states.get(rule.name)
            since = saved[0] if saved else now_ms - self.RECOVER_DISPATCHES_MS
            for row in self.outbox.dispatches_since(since):
                expect(row.dispatch_id, row.place_id, row.incident_id, row.created_ms)
                self._remember_dispatch(row.dispatch_id, row.place_id, row.incident_id)
        if states:
            log.info("alert rules restored from their checkpoints: %s", ", ".join(sorted(states)))

    def adopt_policies(self, policies: PolicySet) -> None:
        """Put a version in force that another instance applied (and rebased the open incidents for)."""
        with self._lock:
            self.policies = policies
            set_thresholds = getattr(self.ctx, "set_policy_thresholds", None)
            if set_thresholds is not None:
                set_thresholds(policies.thresholds)

    def apply_policies(self, policies: PolicySet, now_ms: int) -> list[IncidentChange]:
        """A new version of the policies takes effect at once: new incidents follow it, and every open
        (unacknowledged) incident's running deadline is recomputed under it (``escalation.rebase``), with a note
        on its trail. The rules' thresholds follow it too, when the rules' context takes them."""
        with self.batch(now_ms) as alerts:
            old, self.policies = self.policies, policies
            for incident in list(self._active.values()):
                rebased = escalation.rebase(incident, old, policies, now_ms)
                if rebased is not None:
                    alerts.pending[incident.key] = rebased[0]
                    alerts.audit.append(rebased[1])
            try:
                alerts.commit_alone()
            except Exception:
                self.policies = old
                raise
            set_thresholds = getattr(self.ctx, "set_policy_thresholds", None)
            if set_thresholds is not None:
                set_thresholds(policies.thresholds)
        log.info("escalation policies version=%s applied: %d open incidents rebased", policies.version,
                 len(alerts.pending))
        return alerts.changes


    def restore_rules(self, now_ms: int) -> None:
        """The rules' state as the last checkpoints have it (this instance takes over ingest from another)."""
        with self._lock:
            self._restore_rules(now_ms)

    def checkpoint(self, now_ms: int, fence: Callable[[Connection], None] | None = None) -> None:
        """Write every stateful rule's snapshot (the ticker does, every CHECKPOINT_EVERY_MS; so may a stop).
        ``fence``: the ingest role's check (foundation/leases.py), in the same transaction."""
        with self._lock:
            snapshots = {rule.name: rule.snapshot() for rule in self.rules}
            for rule in self.rules:
                rule.changed = False
        states = {name: None if snap is None else json.dumps(snap, separators=(",", ":"))
                  for name, snap in snapshots.items()}
        with self.store.transaction() as conn:
            if fence is not None:
                fence(conn)
            self.store.save_rule_states(states, now_ms, conn)
        with self._lock:
            for rule in self.rules:
                rule.saved(snapshots[rule.name])

    def _persist_urgent(self, now_ms: int) -> None:
        """Rules that must lose nothing to a crash: their snapshot, right after the batch that changed them."""
        urgent = [rule for rule in self.rules if rule.persist_at_once and rule.changed]
        if not urgent:
            return
        try:
            snaps = {rule.name + (URGENT_DELTA if rule.urgent_is_delta else ""): rule.urgent_snapshot()
                     for rule in urgent}
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

    def refresh(self, incident_ids: set[str] | None = None) -> list[IncidentChange]:
        """Read incidents again from the database (another instance changed them; None: every active one, as
        after the bus reconnected or this instance took the ingest role): memory and the listeners follow.

        An incident that ended elsewhere stops its dispatches' timers here (the rules that time a micro fire
        station's answer), so no "dispatch not acknowledged" follows an alarm someone already closed.
        """
        if incident_ids is None:
            fresh = self.store.active()
            known = {i.id for i in fresh}
            with self._lock:
                gone = [i.id for i in self._active.values() if i.id not in known]
            fresh += self.store.get_many(gone)
        else:
            fresh = self.store.get_many(incident_ids)
        changes: list[IncidentChange] = []
        timers: list[Any] = [r for r in self.rules if hasattr(r, "open_dispatches")]
        with self._lock:
            for incident in fresh:
                current = self._active.get(incident.key)
                if current is not None and current.id == incident.id and current.version >= incident.version:
                    continue  # this instance wrote it, or already read it
                if incident.state.is_active:
                    if current is not None and current.id != incident.id and current.opened_ms > incident.opened_ms:
                        continue  # a newer incident of the same key is the active one
                    self._active[incident.key] = incident
                    changes.append(IncidentChange(incident, current is None or current.id != incident.id))
                else:
                    if current is not None and current.id == incident.id:
                        del self._active[incident.key]
                        changes.append(IncidentChange(incident, False))
                    for rule in timers:
                        for dispatch_id, _station in rule.open_dispatches(incident.id):
                            rule.cancel_dispatch(dispatch_id, incident.updated_ms)
        if changes:
            self._notify(changes)
        return changes

    def tick(self, now_ms: int, *, rules: Callable[[Connection], None] | None | bool = True,
             escalate: Callable[[Connection], None] | None | bool = True) -> list[IncidentChange]:
        """Let every rule look at the time (silence, overdue steps), climb overdue escalations; store what they say.

        With several instances (foundation/leases.py) the rules' clock belongs to the ``ingest`` role (their state
        is where the readings are) and the escalations' to the ``escalation`` role: ``rules`` and ``escalate``
        are False where this instance does not hold the role, else True or the role's fence.
        """
        fences = [f for f in (rules, escalate) if callable(f)]
        with self.batch(now_ms, fences) as alerts:
            if rules:
                alerts.apply([s for rule in self.rules for s in rule.on_tick(self.ctx, now_ms)])
            if escalate:
                alerts.escalate_due()
            alerts.commit_alone()
        if rules and now_ms >= self._next_checkpoint_ms:
            self._next_checkpoint_ms = now_ms + self.CHECKPOINT_EVERY_MS
            self.checkpoint(now_ms, rules if callable(rules) else None)
        return alerts.changes

    def system_tick(self, signals: Sequence[Signal], present: set[str], now_ms: int,
                    fence: Callable[[Connection], None] | None = None) -> list[IncidentChange]:
        """Raise the system faults that are due (``alerts/system_faults.py``) and close every active system
        incident whose fault no longer holds (also one raised before a restart), in one transaction."""
        with self.batch(now_ms, [fence] if fence else ()) as alerts:
            alerts.apply(signals)
            for incident in list(self._active.values()):
                if (incident.category == SYSTEM_CATEGORY and incident.key not in present
                        and incident.key not in alerts.pending):
                    closed, entry = clear_system(incident, now_ms, "系统已自动恢复，自动结案（the condition cleared）")
                    alerts.pending[incident.key] = closed
                    alerts.audit.append(entry)
            alerts.commit_alone()
        return alerts.changes

    @contextmanager
    def batch(self, now_ms: int, fences: Sequence[Callable[[Connection], None]] = ()) -> Iterator[AlertBatch]:
        """Evaluate readings under the lock; memory and listeners see the result only if ``committed`` is set.

        ``fences``: the roles the batch writes for, checked in its transaction (``Fenced`` rolls it back).
        Rows another instance changed meanwhile (``StaleIncident``) are read again before the error goes
        on: the caller's retry works on them as they are now.
        """
        with self._lock:
            alerts = AlertBatch(self, now_ms, fences)
            try:
                yield alerts
            except StaleIncident as exc:
                self.refresh(set(exc.incident_ids))
                raise
            if alerts.committed:
                self._active.update(alerts.pending)
                for key, incident in alerts.pending.items():
                    if not incident.state.is_active and self._active.get(key) is incident:
                        del self._active[key]  # closed in the batch (a system fault that cleared)
                self._expect_dispatches(alerts.notices, now_ms)
                self._persist_urgent(now_ms)
        if not alerts.announce_later:
            self.announce(alerts)

    def announce(self, alerts: AlertBatch) -> None:
        """A committed batch's news, outside every lock: the dispatcher woken for its notices, the listeners (the
        live screens) told of its changes. Nothing for a batch that did not commit."""
        if alerts.committed and alerts.notices:
            self._on_notices()
        if alerts.committed and alerts.pending:
            self._notify(alerts.changes)

    def _expect_dispatches(self, notices: Sequence[Notice], now_ms: int) -> None:
        """Tell the rules that time responses (a micro fire station's 1 and 3 minutes) that a dispatch went out."""
        for n in notices:
            if n.dispatch_id:
                self._remember_dispatch(n.dispatch_id, n.place_id, n.incident_id)
                for rule in self.rules:
                    expect = getattr(rule, "expect_dispatch", None)
                    if expect is not None:
                        expect(n.dispatch_id, n.place_id, n.incident_id, now_ms)

    def _remember_dispatch(self, dispatch_id: str, station_id: str, incident_id: str) -> None:
        self._dispatched[dispatch_id] = (station_id, incident_id)
        if len(self._dispatched) > self.REMEMBER_DISPATCHES:
            del self._dispatched[next(iter(self._dispatched))]

    def dispatched(self, dispatch_id: str) -> tuple[str, str] | None:
        """The station a dispatch went to and the incident it was for; None: this engine sent no such dispatch."""
        found = self._dispatched.get(dispatch_id)
        if found is None and self.outbox is not None:
            row = self.outbox.dispatch(dispatch_id)
            found = (row.place_id, row.incident_id) if row is not None else None
        return found

    def answer_dispatch(self, incident_id: str, station_id: str, dispatch_id: str, action: Action, by: str,
                        now_ms: int) -> Incident:
        """A micro fire station's answer through the API (its app, or an operator relaying its call).

        The same step as its MQTT message (``dispatch_ack`` for acknowledge, ``dispatch_depart`` for
        dispatch, ``dispatch_on_scene`` for arrive, ``dispatch_finished`` for resolve): the incident
        moves, or keeps a note when an operator was quicker, and the 1-minute / 3-minute measures
        count it. Without ``dispatch_id``, the station's latest dispatch to this incident. Raises
        Invalid (another action), NotFound (no such active incident) or Conflict (not its dispatch).
        """
        if not station_id:
            raise Invalid(f"答复派单 {dispatch_id} 须注明微型消防站（dispatch_id needs station_id）")
        answer = _ANSWERS.get(action)
        if answer is None:
            raise Invalid(f"微型消防站只能确认、出发、到场、处置完毕（a station cannot {action.value}）")
        with self.batch(now_ms) as alerts:
            incident = next((i for i in self._active.values() if i.id == incident_id), None)
            if incident is None:
                self.store.get(incident_id)  # NotFound when there is no such incident at all
                raise Conflict(f"事件 {incident_id} 已结束（incident {incident_id} is no longer active）")
            if not dispatch_id:
                dispatch_id = next((d for d, (s, i) in reversed(self._dispatched.items())
                                    if s == station_id and i == incident_id), "")
                if not dispatch_id and self.outbox is not None:
                    rows = [r for r in self.outbox.for_incident(incident_id) if r.dispatch_id and r.place_id == station_id]
                    dispatch_id = rows[-1].dispatch_id if rows else ""
                if not dispatch_id:
                    raise Conflict(f"微型消防站 {station_id} 未被派往事件 {incident_id}"
                                   f"（station {station_id} was not dispatched to incident {incident_id}）")
            refusal = refuse_answer(dispatch_id, station_id, self.dispatched(dispatch_id), incident_id)
            if refusal is not None:
                log.warning("station answer refused device=%s dispatch=%s incident=%s: %s", station_id, dispatch_id,
                            incident_id, refusal)
                raise Conflict(refusal)
            kind, step = answer
            message = step(v=1, ts=now_ms, seq=0, dispatch_id=dispatch_id)
            reading = Reading(incident.location.street_id, kind, station_id, MessageClass.EVENT, message, now_ms)
            updated = alerts.answer(reading, by)
            alerts.commit_alone()
        return updated

    def handle_batch(self, readings: Sequence[Reading], now_ms: int) -> list[IncidentChange]:
        """Evaluate and store readings in a transaction of their own (for callers outside ingest)."""
        with self.batch(now_ms) as alerts:
            alerts.evaluate(readings)
            alerts.commit_alone()
        return alerts.changes

    PERSON_TRIES = 3  # a person's action meeting another instance's change is applied again to the fresh row

    def _retrying(self, do: Callable[[], Incident]) -> Incident:
        for attempt in range(self.PERSON_TRIES):
            try:
                return do()
            except StaleIncident as exc:
                self.refresh(set(exc.incident_ids))
                if attempt == self.PERSON_TRIES - 1:
                    raise Conflict(f"{exc}; try again") from exc
        raise AssertionError("unreachable")

    def act(self, incident_id: str, action: Action, actor: str, note: str, now_ms: int) -> Incident:
        """A person's action on an incident; raises NotFound or IllegalTransition.

        A group incident resolved, closed or marked false takes its active members with it; any incident
        that ends (closed, false alarm) stands down the micro fire stations still dispatched to it.
        """
        return self._retrying(lambda: self._act(incident_id, action, actor, note, now_ms))

    def _act(self, incident_id: str, action: Action, actor: str, note: str, now_ms: int) -> Incident:
        with self._lock:
            current = self.find_active(incident_id) or self.store.get(incident_id)
            updated, entry = transition(current, action, actor, note, now_ms)
            changed, audit = [updated], [entry]
            for member in members_of(updated, self._active.values()):
                followed = follow_group(member, updated, actor, now_ms)
                if followed is not None:
                    changed.append(followed[0])
                    audit.append(followed[1])
            changes = self._commit_person(changed, audit, actor, now_ms)
        self._after_person(changes)
        return updated

    def split(self, group_id: str, device_id: str, actor: str, now_ms: int) -> Incident:
        """Take a member device out of a group incident: its own incident is handled on its own from now on."""
        return self._retrying(lambda: self._split(group_id, device_id, actor, now_ms))

    def _split(self, group_id: str, device_id: str, actor: str, now_ms: int) -> Incident:
        with self._lock:
            group = self.find_active(group_id) or self.store.get(group_id)
            updated, entry = split_member(group, device_id, actor, now_ms)
            audit = [entry]
            own = next((i for i in self._active.values() if i.device_id == device_id and not i.scope
                        and i.category == group.category), None)
            changed = [updated]
            if own is not None:
                _, note = transition(own, Action.NOTE, actor, f"从群组事件 {group.id} 拆出，单独处置", now_ms)
                audit.append(note)
                changed.append(own)
            changes = self._commit_person(changed, audit, actor, now_ms)
        self._after_person(changes)
        return updated

    def merge(self, incident_id: str, into_id: str, actor: str, note: str, now_ms: int) -> Incident:
        """Merge an incident into an active group incident, which carries its device from then on."""
        return self._retrying(lambda: self._merge(incident_id, into_id, actor, note, now_ms))

    def _merge(self, incident_id: str, into_id: str, actor: str, note: str, now_ms: int) -> Incident:
        with self._lock:
            source = self.find_active(incident_id) or self.store.get(incident_id)
            group = self.find_active(into_id) or self.store.get(into_id)
            merged, bigger, audit = merge_into(source, group, actor, note, now_ms)
            changes = self._commit_person([merged, bigger], audit, actor, now_ms)
        self._after_person(changes)
        return bigger

    def find_active(self, incident_id: str) -> Incident | None:
        return next((i for i in self._active.values() if i.id == incident_id), None)

    def _commit_person(self, changed: list[Incident], audit: list[AuditEntry], actor: str,
                       now_ms: int) -> tuple[list[IncidentChange], bool]:
        """Store a person's changes (with the stand-downs they cause) in one transaction; then memory. Under the lock."""
        # Every dispatch to an incident that ended is closed: no deadline runs on it any more. The station is told
        # to stand down (a cancel notice) unless the incident had got as far as someone on scene or done.
        ended_from = {a.incident_id: a.from_state for a in audit if not a.to_state.is_active}
        timers: list[Any] = [r for r in self.rules if hasattr(r, "open_dispatches")]
        cancelled: set[str] = set()
        notices: list[Notice] = []
        for incident in list(changed):
            if incident.state.is_active:
                continue
            for rule in timers:
                for dispatch_id, station in rule.open_dispatches(incident.id):
                    cancelled.add(dispatch_id)
                    if ended_from.get(incident.id) in (State.ON_SCENE, State.RESOLVED):
                        continue
                    notices += stand_down_notices(incident, dispatch_id, station, self.hierarchy, now_ms)
                    audit.append(AuditEntry(incident.id, now_ms, actor, "stand_down", incident.state, incident.state,
                                            f"已通知微型消防站 {station} 撤回（派单 {dispatch_id} 撤销）"))
        for breach in list(self._active.values()):  # "station late" incidents about a cancelled dispatch close too
            dispatch = breach.condition.partition(":")[2]
            if breach.condition.startswith("dispatch_") and dispatch in cancelled:
                closed, entry = stand_down_breach(breach, dispatch, actor, now_ms)
                changed.append(closed)
                audit.append(entry)
        with self.store.transaction() as conn:
            versions = self.store.save(changed, audit, conn)
            changed = [replace(i, version=versions[i.id]) for i in changed]
            self.bus.announce(conn, INCIDENTS, [i.id for i in changed])
            if notices and self.outbox is not None:
                self.outbox.add(notices, now_ms, conn)
        for rule in timers:
            for d in cancelled:
                rule.cancel_dispatch(d, now_ms)
        for incident in changed:
            if incident.state.is_active:
                self._active[incident.key] = incident
            elif self._active.get(incident.key, incident).id == incident.id:
                self._active.pop(incident.key, None)
        if cancelled:
            self._persist_urgent(now_ms)
            log.info("stood down dispatches=%s actor=%s", ",".join(sorted(cancelled)), actor)
        return [IncidentChange(i, False) for i in changed], bool(notices)

    def _after_person(self, result: tuple[list[IncidentChange], bool]) -> None:
        changes, notices = result
        if notices:
            self._on_notices()
        self._notify(changes)

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
