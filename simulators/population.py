"""A population of simulated devices placed from the street's hierarchy: a building, a community, the street.

Which devices a place has is each kind's placement (``devices/placement.py``, the same rows
as the generated street's registration file): a smoke detector in every unit, a lift camera
in every high-rise, a charging station at every third building of a community, a one-touch
alarm and a water meter in every household of an elderly person living alone, and the
community's micro fire station registered at its first building. The whole generated
street is 50,615 devices.

``Population.tick(now_ms)`` returns what is due across all of them, from a heap keyed on
each device's next moment, so a tick costs in proportion to what is due, not to the size
of the street.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from devices import placement
from devices.drill import drill_id
from devices.hierarchy import Building, Hierarchy
from devices.kinds.fire_station.simulator import FireStationSim
from devices.placement import Row, building_code, place_rows
from devices.registry import DeviceRecord
from simulators.devices import SIMULATORS
from simulators.devices.base import Publication, SimulatedDevice
from foundation.errors import NotFound

__all__ = ["Population", "Row", "building_code", "building_rows", "place_rows"]


def building_rows(hierarchy: Hierarchy, building: Building, index_in_community: int) -> list[Row]:
    """The building's devices and those of its households (``devices/placement.py``)."""
    return placement.building_rows(building, index_in_community) + placement.household_rows(hierarchy, building.id)


@dataclass
class Population:
    """Simulated devices and their registrations; what is due when."""

    records: list[DeviceRecord]
    devices: dict[str, SimulatedDevice]
    _heap: list[tuple[int, int]] = field(default_factory=list, init=False, repr=False)
    _order: list[SimulatedDevice] = field(default_factory=list, init=False, repr=False)
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_rows(cls, rows: Sequence[Row], street: str = "wanli", seed: int = 0, start_seq: int = 0) -> Population:
        records, devices = [], {}
        for device_id, kind, building_id, floor, unit, label in rows:
            records.append(DeviceRecord(device_id, kind, street, building_id, floor, unit, label=label))
            devices[device_id] = SIMULATORS[kind](device_id, street=street, seed=seed, seq=start_seq)
        return cls(records, devices)

    @classmethod
    def of(cls, hierarchy: Hierarchy, *, building_ids: Iterable[str] = (), community_ids: Iterable[str] = (),
           whole_street: bool = False, street: str = "wanli", seed: int = 0, start_seq: int = 0) -> Population:
        rows = place_rows(hierarchy, building_ids=building_ids, community_ids=community_ids, whole_street=whole_street)
        return cls.from_rows(rows, street, seed, start_seq)

    def __len__(self) -> int:
        return len(self.devices)

    def device(self, device_id: str) -> SimulatedDevice:
        """A device by id; in a drill's population a script's real id names its drill twin (``DRILL-…``)."""
        found = self.devices.get(device_id) or self.devices.get(drill_id(device_id))
        if found is None:
            raise NotFound("simulated device", device_id)
        return found

    def of_kind(self, kind: str) -> list[SimulatedDevice]:
        return [d for d in self.devices.values() if d.kind == kind]

    def stations(self) -> list[FireStationSim]:
        return [d for d in self.devices.values() if isinstance(d, FireStationSim)]

    def start(self, now_ms: int, announce: bool = True) -> list[Publication]:
        """Every device comes online; periodic messages are spread over one interval, as real ones drift apart."""
        out: list[Publication] = []
        self._order = list(self.devices.values())
        self._index = {d.device_id: i for i, d in enumerate(self._order)}
        self._heap = []
        for i, d in enumerate(self._order):
            out += d.start(now_ms, announce=announce)
            self._heap.append((d.due_ms(), i))
        heapq.heapify(self._heap)
        return out

    def touch(self, device: SimulatedDevice) -> None:
        """Something was scheduled on ``device`` from outside: make sure the heap wakes it in time."""
        i = self._index.get(device.device_id)
        if i is not None:
            heapq.heappush(self._heap, (device.due_ms(), i))

    def next_due_ms(self) -> int:
        return self._heap[0][0] if self._heap else 2**62

    def tick(self, now_ms: int, limit: int = 0) -> list[Publication]:
        """Everything due up to ``now_ms`` (at most about ``limit`` messages when given)."""
        out: list[Publication] = []
        heap = self._heap
        while heap and heap[0][0] <= now_ms and not (limit and len(out) >= limit):
            due, i = heapq.heappop(heap)
            d = self._order[i]
            if d.due_ms() != due:
                continue  # a stale entry: the device was rescheduled (it has a fresher one)
            out += d.tick(now_ms)
            heapq.heappush(heap, (d.due_ms(), i))
        return out
