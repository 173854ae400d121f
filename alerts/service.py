"""The alert engine's shell: rules → incidents → store → listeners.

Holds the active incidents by dedup key in memory (loaded from the store at start), so a
batch of readings costs one transaction however many alarms it carries. Listeners (the
live screen's feed) are told of every change after it is committed, never before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from alerts.incidents import Action, AuditEntry, Incident, new_incident_id, open_or_update, transition
from alerts.rules import DEFAULT_RULES, Rule, evaluate
from alerts.store import IncidentStore
from devices.hierarchy import Location
from devices.reading import Reading

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IncidentChange:
    incident: Incident
    created: bool


Listener = Callable[[Sequence[IncidentChange]], None]
Locator = Callable[[str], Location]  # device id → where it is


class AlertService:
    def __init__(self, store: IncidentStore, locate: Locator, rules: Mapping[str, Sequence[Rule]] = DEFAULT_RULES,
                 new_id: Callable[[], str] = new_incident_id) -> None:
        self._store = store
        self._locate = locate
        self._rules = rules
        self._new_id = new_id
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._active: dict[str, Incident] = {i.key: i for i in store.active()}

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def handle_batch(self, readings: Sequence[Reading], now_ms: int) -> list[IncidentChange]:
        signals = evaluate(readings, self._rules)
        if not signals:
            return []
        with self._lock:
            pending: dict[str, Incident] = {}  # by key; memory moves only once the store has committed
            created: set[str] = set()
            audit: list[AuditEntry] = []
            for signal in signals:
                current = pending.get(signal.key) or self._active.get(signal.key)
                incident, entry = open_or_update(current, signal, self._locate(signal.device_id), now_ms, self._new_id())
                if current is None or not current.state.is_active:
                    created.add(incident.id)
                pending[signal.key] = incident
                if entry is not None:
                    audit.append(entry)
            self._store.save(pending.values(), audit)
            self._active.update(pending)
            latest = {i.id: i for i in pending.values()}
        changes = [IncidentChange(i, i.id in created) for i in latest.values()]
        self._notify(changes)
        return changes

    def act(self, incident_id: str, action: Action, actor: str, note: str, now_ms: int) -> Incident:
        """A person's action on an incident; raises NotFound or IllegalTransition."""
        with self._lock:
            current = next((i for i in self._active.values() if i.id == incident_id), None) or self._store.get(incident_id)
            updated, entry = transition(current, action, actor, note, now_ms)
            self._store.save([updated], [entry])
            if updated.state.is_active:
                self._active[updated.key] = updated
            elif self._active.get(updated.key, updated).id == updated.id:
                self._active.pop(updated.key, None)
        self._notify([IncidentChange(updated, False)])
        return updated

    def active(self) -> list[Incident]:
        with self._lock:
            return sorted(self._active.values(), key=lambda i: i.updated_ms, reverse=True)

    def _notify(self, changes: Sequence[IncidentChange]) -> None:
        for listener in self._listeners:
            try:
                listener(changes)
            except Exception:  # a broken screen must never stop alerting
                log.exception("incident listener failed")

