"""Playing a population or a scenario as a drill on a live street (devices/drill.py).

A drill's devices are the drill twins of the place's devices (``DRILL-SD-XQ01-0301`` in unit
0301 of 香泉1号楼), so they publish on topics of their own, number their messages in sequences
of their own, and everything they raise is a drill. What the drill publishes goes through
``drill_topic``: a message written for a real device's topic (a scenario's hand-made hostile
messages) is sent as its twin's, so a drill can never speak as a real device.

A run judges only its own incidents: ``DrillView`` keeps the incidents its devices raised
since it started (an unrelated incident open on the street is not its business), shows them
under the scenario's own names (the twin's prefix taken off, so ``SD-XQ01-0301`` in an
expectation means that unit's detector in the drill), and counts dead letters and ingest
figures from where they stood when it started.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from devices.drill import DRILL_ZH, drill_id, is_drill, real_id
from devices.topics import is_device_id
from simulators.population import Row


def drill_rows(rows: Sequence[Row]) -> list[Row]:
    """The drill twins of registration rows: ids ``DRILL-…``, labels saying 演练."""
    return [(drill_id(device_id), kind, building, floor, unit, f"【{DRILL_ZH}】{label}")
            for device_id, kind, building, floor, unit, label in rows]


def drill_topic(topic: str) -> str:
    """A device topic (``safety/v1/{street}/{kind}/{id}/{class}``) as the drill twin's; anything else as it is.

    An id no topic may carry stays as it is, so a malformed topic stays malformed (and is refused as such)."""
    parts = topic.split("/")
    if len(parts) == 6 and parts[0] == "safety" and is_device_id(parts[4]) and not is_drill(parts[4]):
        twin = drill_id(parts[4])
        if is_device_id(twin):
            parts[4] = twin
            return "/".join(parts)
    return topic


def _undrilled(inc: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(inc)
    out["device_id"] = real_id(str(inc.get("device_id", "")))
    out["members"] = [real_id(m) for m in inc.get("members") or ()]
    return out


@dataclass
class DrillView:
    """What a run sees of the API: its own incidents, dead letters and figures since its start."""

    device_ids: set[str]
    since_ms: int = 0
    drill: bool = True  # its devices are drill twins: show them under the scenario's own names
    dead_letters_before: dict[str, int] = field(default_factory=dict)
    stats_before: dict[str, Any] = field(default_factory=dict)

    def owns(self, inc: Mapping[str, Any]) -> bool:
        """Raised by this run's devices (or gathering one of them), opened since it started."""
        from simulators.expectations import iso_ms

        opened = inc.get("opened_at")
        if opened and iso_ms(str(opened)) < self.since_ms:
            return False
        ids = {str(inc.get("device_id", "")), *(inc.get("members") or ())}
        return bool(ids & self.device_ids)

    def incidents(self, incidents: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        mine = [i for i in incidents if self.owns(i)]
        return [_undrilled(i) if self.drill else dict(i) for i in mine]

    def dead_letters(self, counts: Mapping[str, int]) -> dict[str, int]:
        return {k: v - self.dead_letters_before.get(k, 0) for k, v in counts.items()
                if v - self.dead_letters_before.get(k, 0) > 0}

    def stats(self, stats: Mapping[str, Any]) -> dict[str, Any]:
        return {k: (v - self.stats_before[k] if isinstance(v, int | float) and isinstance(self.stats_before.get(k),
                                                                                          int | float) else v)
                for k, v in stats.items()}

    def devices(self, devices: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [{**d, "device_id": real_id(str(d["device_id"]))} if self.drill else dict(d) for d in devices]
