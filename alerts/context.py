"""The rules' view of the world, backed by the registry and the thresholds."""

from __future__ import annotations

from collections.abc import Sequence

from alerts.rules.base import Place
from alerts.thresholds import Thresholds
from devices.hierarchy import Location
from devices.registry import DeviceRegistry


class RegistryContext:
    def __init__(self, registry: DeviceRegistry, thresholds: Thresholds) -> None:
        self._registry = registry
        self._thresholds = thresholds

    def place(self, device_id: str) -> Place | None:
        rec = self._registry.find(device_id)
        if rec is None:
            return None
        community = self._registry.hierarchy.buildings.get(rec.building_id)
        return Place(rec.device_id, rec.kind, rec.building_id, rec.floor, rec.unit,
                     community.community_id if community else "")

    def devices(self, kind: str) -> Sequence[Place]:
        h = self._registry.hierarchy
        return [Place(r.device_id, r.kind, r.building_id, r.floor, r.unit,
                      h.buildings[r.building_id].community_id if r.building_id in h.buildings else "")
                for r in self._registry.active() if r.kind == kind]

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
