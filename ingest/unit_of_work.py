"""One ingest batch's unit of work: what the batch changes, gathered in one object and committed once.

A batch of messages changes four things: the devices' health and sequence state (the
registry's ``DeviceBatch``), the incidents the rules open or update with the notices their
escalation queues (the alert service's ``AlertBatch``), the dead letters of the messages it
refused (stored, or only counted), and the rate limits' charges (``DeviceRateLimits``).
``IngestUnitOfWork`` opens all of them together; ``commit()`` writes them in ONE database
transaction (the ingest role's fences checked first in it, ``foundation/leases.py``: a holder
that lost the role writes nothing) and returns what changed, ``Committed``. Memory (device
states, active incidents, the rules' expected dispatches) takes the changes when the unit
closes after its commit; then, every lock let go, the dispatcher is woken for the notices
and the listeners (the live screens) hear of the changes. Closed by
an exception before or inside ``commit()``, it leaves everything as it was: the devices'
states and the incidents in memory untouched, the rate limits' charges refunded; the
database transaction, if one was begun, rolled back.

Lock order (docs/reliability.md, "Lock order"): the unit takes the registry's lock when it
opens (admission judges sequence numbers against the devices' states; the commit applies the
new ones: one critical section) and the alert service's lock when the rules first evaluate
(``evaluate``); it holds both until it closes. The pipeline appends the batch's points to the
spool (its own lock) after admission and before the rules evaluate, so the spool's lock is
never taken under the alert service's. The database's write lock comes last, inside
``commit()``. The listeners are told after both locks are let go (``AlertService.announce``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType

from sqlalchemy import Connection, Engine

from alerts.service import AlertBatch, AlertService, IncidentChange
from devices.reading import Reading
from devices.registry import DeviceBatch, DeviceRegistry
from ingest.dead_letters import DeadLetter, DeadLetterStore
from ingest.rate_limit import DeviceRateLimits


@dataclass(frozen=True, slots=True)
class Committed:
    """What one unit of work committed."""

    incidents: tuple[IncidentChange, ...] = ()  # incidents opened or changed (created: opened by this batch)
    notices: int = 0  # notices queued in the outbox, in the same transaction as their incidents
    device_states: tuple[str, ...] = ()  # devices whose state was written in the transaction (the rest: flushed later)
    dead_letters: int = 0  # dead letters stored
    unstored: int = 0  # dead letters counted but not stored (a device past its rate, the disk at its reserve)


class IngestUnitOfWork:
    """Open with ``with``; ``devices`` for admission, ``evaluate`` for the rules, ``dead_letters`` for what was
    refused, then ``commit()`` once. Without a commit, or on an exception, nothing is kept."""

    def __init__(self, engine: Engine, registry: DeviceRegistry, alerts: AlertService, letters: DeadLetterStore,
                 rate_limits: DeviceRateLimits, now_ms: int, fences: Sequence[Callable[[Connection], None]] = ()) -> None:
        self._engine = engine
        self._registry = registry
        self._alerts = alerts
        self._letters = letters
        self._rate_limits = rate_limits
        self._now_ms = now_ms
        self._fences = fences
        self._stack: ExitStack | None = None
        self._devices: DeviceBatch | None = None
        self._incidents: AlertBatch | None = None
        self._stored: list[DeadLetter] = []
        self._unstored: Counter[str] = Counter()
        self.committed: Committed | None = None

    def __enter__(self) -> IngestUnitOfWork:
        with ExitStack() as stack:
            stack.enter_context(self._rate_limits.undo_on_error())  # charges taken back on an exception
            self._devices = stack.enter_context(self._registry.batch())  # the registry's lock, from here to the end
            self._stack = stack.pop_all()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        stack, self._stack = self._stack, None
        assert stack is not None, "the unit of work was not opened"
        suppressed = stack.__exit__(exc_type, exc, tb)  # memory takes a committed batch; the locks are let go
        if exc_type is None and self._incidents is not None:
            self._alerts.announce(self._incidents)  # the dispatcher and the live screens, under no lock of ours
        return suppressed

    @property
    def devices(self) -> DeviceBatch:
        """The devices' sequence verdicts and health for this batch (``DeviceBatch.admit``)."""
        assert self._devices is not None, "the unit of work was not opened"
        return self._devices

    def _incident_batch(self) -> AlertBatch:
        if self._incidents is None:
            assert self._stack is not None, "the unit of work was not opened"
            # the alert service's lock, from here to the end (after the registry's: the lock order)
            self._incidents = self._stack.enter_context(self._alerts.batch(self._now_ms, self._fences))
            self._incidents.announce_later = True  # told once the registry's lock is let go too (__exit__)
        return self._incidents

    def evaluate(self, readings: Sequence[Reading]) -> None:
        """The rules hear the readings; the incidents they change stay pending until ``commit()``."""
        self._incident_batch().evaluate(readings)

    def dead_letters(self, stored: Sequence[DeadLetter], unstored: Counter[str]) -> None:
        """Letters to keep in the commit's transaction, and letters counted by reason but not kept."""
        self._stored.extend(stored)
        self._unstored.update(unstored)

    def commit(self) -> Committed:
        """Write everything in ONE transaction, the fences checked first (``Fenced`` rolls it back), and mark the
        batch's device states and incidents committed: memory takes them when the unit closes. Raises whatever
        the database raises; then nothing is kept. Writes nothing, and begins no transaction, when the batch
        changed no incident and refused nothing: its devices' states are flushed later (``flush_states``)."""
        if self.committed is not None:
            raise RuntimeError("a unit of work commits once")
        devices, incidents = self.devices, self._incident_batch()
        stored, unstored = self._stored, +self._unstored
        written: list[str] = []
        notices = 0
        if incidents.pending or stored or unstored:
            written = list(dict.fromkeys(i.device_id for i in incidents.pending.values() if i.device_id
                                         in devices.pending))
            with self._engine.begin() as conn:
                notices = incidents.write(conn)  # checks the ingest role's fence first (several instances)
                devices.write(conn, written)
                self._letters.add_batch(stored, conn)
                self._letters.count_unstored(unstored, conn)
        devices.committed = incidents.committed = True
        self.committed = Committed(tuple(incidents.changes), notices, tuple(written), len(stored),
                                   sum(unstored.values()))
        return self.committed
