"""A population of simulated devices placed from the street's hierarchy: a building, a community, the street.

Which devices a place has follows ``devices.street_generator.device_rows`` (the generated
street's registration file): a smoke detector in every unit, a lift camera in every
high-rise, a charging station at every third building of a community, a one-touch alarm
and a water meter in every household of an elderly person living alone, and the
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

from devices.drill import drill_id
from devices.hierarchy import Building, Hierarchy
from devices.registry import DeviceRecord
from simulators.devices import SIMULATORS
from simulators.devices.base import Publication, SimulatedDevice
from simulators.devices.fire_station import FireStationSim
from wanli.errors import NotFound

Row = tuple[str, str, str, int | None, str, str]  # (device id, kind, building, floor, unit, label)


def building_code(building_id: str) -> str:
    return building_id.upper().replace("-", "")


def building_rows(hierarchy: Hierarchy, building: Building, index_in_community: int) -> list[Row]:
    code, rows = building_code(building.id), []
    for floor in range(1, building.floors + 1):
        for u in range(1, building.units_per_floor + 1):
            unit = f"{floor:02d}{u:02d}"
            rows.append((f"SD-{code}-{unit}", "smoke_detector", building.id, floor, unit, f"{building.name} {unit}"))
    if building.floors >= 10:
        rows.append((f"LC-{code}-A", "lift_camera", building.id, 1, "", f"{building.name} A梯"))
    if index_in_community % 3 == 0:
        rows.append((f"CS-{code}-01", "charging_station", building.id, None, "", f"{building.name} 充电棚"))
    for (bid, unit), home in sorted(hierarchy.households.items()):
        if bid == building.id:
            rows.append((f"EA-{code}-{unit}", "elderly_alarm", bid, int(unit[:2]), unit, home.resident))
            rows.append((f"WM-{code}-{unit}", "water_meter", bid, int(unit[:2]), unit, home.resident))
    return rows


def place_rows(hierarchy: Hierarchy, *, building_ids: Iterable[str] = (), community_ids: Iterable[str] = (),
               whole_street: bool = False) -> list[Row]:
    """Registration rows of the devices in the given buildings and communities (or the whole street)."""
    wanted_b, wanted_c = set(building_ids), set(community_ids)
    for b in wanted_b:
        hierarchy.building(b)  # NotFound for an unknown building
    for c in wanted_c:
        if c not in hierarchy.communities:
            raise NotFound("community", c)
    rows: list[Row] = []
    households_first: list[Row] = []
    for community in hierarchy.communities.values():
        take_all = whole_street or community.id in wanted_c
        for i, bid in enumerate(community.building_ids):
            if take_all or bid in wanted_b:
                found = building_rows(hierarchy, hierarchy.buildings[bid], i)
                rows += [r for r in found if r[1] not in ("elderly_alarm", "water_meter")]
                households_first += [r for r in found if r[1] in ("elderly_alarm", "water_meter")]
    rows += households_first
    first = {c.id: c.building_ids[0] for c in hierarchy.communities.values() if c.building_ids}
    for s in hierarchy.fire_stations.values():
        home = first.get(s.community_id, "")
        if whole_street or s.community_id in wanted_c or home in wanted_b or wanted_b & set(s.covers):
            rows.append((s.id, "fire_station", home, None, "", s.name))
    return rows


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
