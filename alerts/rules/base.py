"""What an alert rule is, and what it may ask about the world.

A rule is a small state machine with no I/O and no clock of its own (bytewax's
``StatefulLogic``): the engine hands it each reading of the kinds it watches
(``on_reading``) and, about once a second, the time (``on_tick``) for what silence means
(a detector that stopped reporting, an elderly person with no activity for a day, a
dispatch not acknowledged within a minute). It answers with ``Signal``s; the engine turns
them into incidents, deduplicated by key, and escalates them. Rules keep their windows in
numpy arrays where they compute over many readings.

A rule that keeps state (windows, timers, expected dispatches) hands it out as plain data
(``snapshot``, JSON-able) and takes it back (``restore``): the engine checkpoints the
snapshots to SQL and restores them at start, so a restart forgets no window and no
deadline (``alerts/service.py``). A rule whose state must never be lost even to a crash
between checkpoints (a dispatch being timed) sets ``persist_at_once`` and ``changed``: its
snapshot is written right after each batch that changed it. A rule whose state grows with
the day (every dispatch remembered for the KPI screen) sets ``urgent_is_delta`` too: after a
batch it writes only what changed since its last checkpoint was written (``urgent_snapshot``,
in a row of its own), which the engine lays over the checkpoint at start
(``restore_urgent``), so an alarm's commit costs the same at the day's 5,000th dispatch as
at its first.

A rule reads thresholds through its context, so each can be changed per kind and
overridden per building or per device (``alerts/thresholds.py``) without touching code.

Quiet readings (issue 18). Most of a street's traffic is heartbeats inside every bound: they
change nothing but the device's last-seen. A rule may say so ahead of time, beside its own
``on_reading``, so the engine does not call it for them (``alerts/rules/hearing.py``):
``quiet`` marks, for readings of one kind and message type at once, those that provably
raise nothing, clear nothing and change none of the rule's state; a rule whose ``on_reading``
only notes that a device was heard (a dead-man timer) sets ``notes_only`` and takes a batch's
readings in one ``note``. Both may err only on the safe side: a reading ``quiet`` is unsure
of is handed to ``on_reading`` and judged exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import numpy.typing as npt

from alerts.incidents import Signal
from devices.reading import Reading


@dataclass(frozen=True, slots=True)
class Place:
    """Where a registered device is: what a rule needs to correlate by building or floor."""

    device_id: str
    kind: str
    building_id: str
    floor: int | None
    unit: str
    community_id: str = ""
    street_id: str = ""
    # The device's last message as the registry last wrote it down (its own clock; None: never
    # heard from). What a dead-man timer starts from after a restart (alerts/rules/silence.py).
    last_seen_ms: int | None = None


class RuleContext(Protocol):
    def place(self, device_id: str) -> Place | None:
        """The device's registered place, or None if it is not (any more) registered."""
        ...

    def devices(self, kind: str) -> Sequence[Place]:
        """Every active registered device of a kind (the population a dead-man timer watches)."""
        ...

    def threshold(self, kind: str, name: str, device_id: str) -> float:
        """A threshold for this device: its own override, else its building's, else the kind's default."""
        ...


def threshold_span(ctx: RuleContext, kind: str, name: str) -> tuple[float, float] | None:
    """The lowest and highest value a threshold has for any device of the kind (``Thresholds.span``); None when
    the context cannot tell (then no reading is quiet by that threshold)."""
    span = getattr(ctx, "threshold_span", None)
    return None if span is None else span(kind, name)  # type: ignore[no-any-return]


def at_least_every(readings: Sequence[Reading], ctx: RuleContext, kind: str, name: str, field: str,
                   ) -> npt.NDArray[np.bool_] | None:
    """Which readings' ``message.<field>`` is at or above the threshold ``name`` of every device of the kind (a battery
    no device would call low); None when the context cannot tell. NaN is never at least anything."""
    span = threshold_span(ctx, kind, name)
    if span is None:
        return None
    values = np.fromiter((getattr(r.message, field) for r in readings), np.float64, len(readings))
    return values >= span[1]


class Rule:
    """Base of every rule. Subclasses set ``kinds`` and ``THRESHOLDS`` (name → default) and override the hooks."""

    kinds: ClassVar[frozenset[str]] = frozenset()
    # The message types ``on_reading`` acts on (subclasses included); None: every message of its kinds.
    # The engine hands a rule only these, so a heartbeat costs the rules that care about heartbeats.
    messages: ClassVar[tuple[type, ...] | None] = None
    THRESHOLDS: ClassVar[Mapping[str, Mapping[str, float]]] = {}  # kind → {name: default}
    persist_at_once: ClassVar[bool] = False
    # on_reading only notes that a device was heard, says nothing and reads nothing another rule changes: the engine
    # hands it a batch's readings at once (``note``) instead (module docstring)
    notes_only: ClassVar[bool] = False
    urgent_is_delta: ClassVar[bool] = False  # urgent_snapshot is a change since the checkpoint, kept in its own row
    changed: bool = False  # set by a persist_at_once rule when its state changed, cleared once it is written

    @property
    def name(self) -> str:
        """The rule's name in the checkpoint table: its kind's module and its class (``lift_camera.EbikeInLift``).

        A kind's folder keeps its rules in ``devices/kinds/<kind>/rules.py``: named by the folder, as
        ``alerts/rules/<kind>.py`` was, so a checkpoint written before a kind moved is still its own."""
        package, _, module = type(self).__module__.rpartition(".")
        if module == "rules" and package:
            module = package.rpartition(".")[2]
        return f"{module}.{type(self).__name__}"

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        return []

    def quiet(self, readings: Sequence[Reading], ctx: RuleContext) -> npt.NDArray[np.bool_] | None:
        """Of these readings (one kind, one message type this rule acts on, in order), those ``on_reading`` would
        provably answer with nothing and no change of state: True for each the engine may leave out. None: every
        one is handed on. Pure: it reads the readings, the thresholds' spans and the rule's state, changes nothing."""
        return None

    def note(self, readings: Sequence[Reading], ctx: RuleContext, now_ms: int) -> None:
        """A ``notes_only`` rule's ``on_reading`` for a batch's readings of its kinds at once, in their order."""
        for reading in readings:
            self.on_reading(reading, ctx, now_ms)

    def on_tick(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        return []

    def snapshot(self) -> dict[str, Any] | None:
        """The rule's state as plain JSON-able data, or None when there is nothing to keep."""
        return None

    def restore(self, state: Mapping[str, Any]) -> None:
        """Take back what ``snapshot`` handed out before a restart."""

    def saved(self, snapshot: Mapping[str, Any] | None) -> None:
        """Told that this ``snapshot`` (taken under the engine's lock) is now written as the checkpoint."""

    def urgent_snapshot(self) -> dict[str, Any] | None:
        """What a ``persist_at_once`` rule writes after a batch that changed it: its whole snapshot,
        or with ``urgent_is_delta`` only what changed since the snapshot last ``saved``."""
        return self.snapshot()

    def restore_urgent(self, state: Mapping[str, Any]) -> None:
        """Lay an ``urgent_snapshot`` delta over the checkpoint just restored (it may be older: then ignore it)."""
