"""Faults of the service itself become incidents an operator sees. Pure.

"100-1=0" holds for the system too: a telemetry store that went away, a spool at its bound,
a disk nearly full, a receiver restarting again and again, notices that do not leave, a
device flooding the dead-letter store, a server clock the devices disagree with: each is a
**system incident** (kind ``system``, category ``system``) routed to the street operations
centre's technical duty (``tech_duty`` in the hierarchy data), shown on the wall in its own
category, escalated like any other (``alerts/escalation.py``: the ``system`` policies), and
closed by the system itself when the condition clears, the audit saying so.

The shell (``wanli/system_health.py``) looks at the running pieces each tick and says which
``Fault``s hold now; ``SystemFaults.observe`` turns that into signals for faults that have
held for their grace period (raised once, and again only when they grow worse) and the keys
of every fault present, so the engine closes active system incidents that are no longer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alerts.incidents import Signal, Severity

SYSTEM_KIND = "system"
SYSTEM_CATEGORY = "system"
SERVICE_ID = "wanli-service"  # the "device" of a fault of the whole service


@dataclass(frozen=True, slots=True)
class Fault:
    """One condition of the system that holds now."""

    condition: str  # stable code: telemetry_unreachable, spool_full, disk_reserve, ...
    title: str  # for people, in Chinese
    detail: str  # what is wrong and what to do, with the figures
    severity: Severity = Severity.HIGH
    impairs_alarms: bool = False  # while it holds, /readyz answers 503 naming it
    device_id: str = ""  # a fault of one device (a flood of dead letters); "" for the service
    after_s: float = 0.0  # how long it must hold before it becomes an incident

    def key(self, street_id: str) -> str:
        return self.signal(street_id, 0).key

    def signal(self, street_id: str, now_ms: int) -> Signal:
        return Signal(
            device_id=self.device_id or SERVICE_ID, kind=SYSTEM_KIND, condition=self.condition,
            category=SYSTEM_CATEGORY, severity=self.severity, title=self.title, at_ms=now_ms, detail=self.detail,
            scope="" if self.device_id else f"street:{street_id}",
        )


class SystemFaults:
    """Faults seen tick by tick → system incidents to raise, and the keys of those that still hold."""

    def __init__(self, street_id: str) -> None:
        self.street_id = street_id
        self._since: dict[str, int] = {}  # key → when the fault was first seen (this run)
        self._raised: dict[str, Severity] = {}  # key → severity last raised at

    def observe(self, faults: Sequence[Fault], now_ms: int) -> tuple[list[Signal], set[str]]:
        """(signals to apply, keys of every fault present, raised or still in its grace period)."""
        present: set[str] = set()
        signals: list[Signal] = []
        for fault in faults:
            key = fault.key(self.street_id)
            present.add(key)
            since = self._since.setdefault(key, now_ms)
            if now_ms - since < fault.after_s * 1000:
                continue
            last = self._raised.get(key)
            if last is None or fault.severity.rank > last.rank:
                self._raised[key] = fault.severity
                signals.append(fault.signal(self.street_id, now_ms))
        for key in list(self._since):
            if key not in present:
                del self._since[key]
                self._raised.pop(key, None)
        return signals, present
