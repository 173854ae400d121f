"""What an alert rule is, and what it may ask about the world.

A rule is a small state machine with no I/O and no clock of its own (bytewax's
``StatefulLogic``): the engine hands it each reading of the kinds it watches
(``on_reading``) and, about once a second, the time (``on_tick``) for what silence means
(a detector that stopped reporting, an elderly person with no activity for a day, a
dispatch not acknowledged within a minute). It answers with ``Signal``s; the engine turns
them into incidents, deduplicated by key, and escalates them. Rules keep their windows in
numpy arrays where they compute over many readings.

A rule reads thresholds through its context, so each can be changed per kind and
overridden per building or per device (``alerts/thresholds.py``) without touching code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

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


class Rule:
    """Base of every rule. Subclasses set ``kinds`` and ``THRESHOLDS`` (name → default) and override the hooks."""

    kinds: ClassVar[frozenset[str]] = frozenset()
    THRESHOLDS: ClassVar[Mapping[str, Mapping[str, float]]] = {}  # kind → {name: default}

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        return []

    def on_tick(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        return []
