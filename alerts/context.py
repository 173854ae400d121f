"""The rules' view of the world, backed by the registry and the thresholds."""

from __future__ import annotations

from collections.abc import Sequence

from alerts.rules.base import Place
from alerts.thresholds import Thresholds
from devices.hierarchy import Location
from devices.registry import DeviceRecord, DeviceRegistry


class RegistryContext:
    def __init__(self, registry: DeviceRegistry, thresholds: Thresholds) -> None:
        self._registry = registry
        self._thresholds = thresholds

    def place(self, device_id: str) -> Place | None:
        rec = self._registry.find(device_id)
        return None if rec is None else self._place(rec)

    def devices(self, kind: str) -> Sequence[Place]:
        """With each device's last-seen time from its health (what a dead-man timer starts from after a restart)."""
        get = self._registry.get
        return [self._place(get(r.device_id)) for r in self._registry.active() if r.kind == kind]

    def _place(self, rec: DeviceRecord) -> Place:
        building = self._registry.hierarchy.buildings.get(rec.building_id)
        return Place(rec.device_id, rec.kind, rec.building_id, rec.floor, rec.unit,
                     building.community_id if building else "", rec.street_id, rec.last_seen_ms)

    def threshold(self, kind: str, name: str, device_id: str) -> float:
        return self._thresholds.get(kind, name, device_id)

    def locate(self, device_id: str, scope: str = "") -> Location:
        """Where an incident is: its scope's place (a building, the street), else its device's."""
        h = self._registry.hierarchy
        if scope.startswith("building:"):
            return h.locate(scope.removeprefix("building:"))
        if scope.startswith(("street:", "community:", "area:")):
            return h.locate()
        rec = self._registry.find(device_id)
        return self._registry.location(rec) if rec else h.locate()
