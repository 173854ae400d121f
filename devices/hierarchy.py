"""The street's response hierarchy as data: district → street → area → community → building.

Loaded once from a JSON file (``devices/data/wanli.json`` by default); immutable after
that, so every part of the system can hold it and ask it questions without locks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from wanli.errors import NotFound


@dataclass(frozen=True, slots=True)
class Building:
    id: str
    name: str
    community_id: str
    floors: int
    units_per_floor: int
    leader: str = ""
    x: float = 0.0
    y: float = 0.0


@dataclass(frozen=True, slots=True)
class Community:
    id: str
    code: str
    name: str
    area_id: str
    road: str = ""
    property: str = ""
    police: str = ""
    building_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Area:
    id: str
    name: str
    patroller: str = ""
    community_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FireStation:
    id: str
    name: str
    community_id: str
    covers: tuple[str, ...]
    x: float = 0.0
    y: float = 0.0


@dataclass(frozen=True, slots=True)
class Location:
    """Where something is, with names for people; ids for machines."""

    street_id: str
    street: str
    area_id: str = ""
    area: str = ""
    community_id: str = ""
    community: str = ""
    building_id: str = ""
    building: str = ""
    floor: int | None = None
    unit: str = ""

    def label(self) -> str:
        parts = [self.community, self.building]
        if self.floor is not None:
            parts.append(f"{self.floor}层")
        if self.unit:
            parts.append(f"{self.unit}室")
        return " ".join(p for p in parts if p) or self.street


@dataclass(frozen=True)
class Hierarchy:
    district: dict[str, str]
    street_id: str
    street_name: str
    street_ops_centre: str
    areas: dict[str, Area]
    communities: dict[str, Community]
    buildings: dict[str, Building]
    fire_stations: dict[str, FireStation] = field(default_factory=dict)

    def building(self, building_id: str) -> Building:
        try:
            return self.buildings[building_id]
        except KeyError:
            raise NotFound("building", building_id) from None

    def locate(self, building_id: str = "", floor: int | None = None, unit: str = "") -> Location:
        """The full location of a building (and optionally a floor and unit) in the street."""
        if not building_id:
            return Location(self.street_id, self.street_name)
        b = self.building(building_id)
        c = self.communities[b.community_id]
        a = self.areas[c.area_id]
        return Location(self.street_id, self.street_name, a.id, a.name, c.id, c.name, b.id, b.name, floor, unit)

    def stations_covering(self, building_id: str) -> list[FireStation]:
        return [s for s in self.fire_stations.values() if building_id in s.covers]


def load_hierarchy(path: Path | None = None) -> Hierarchy:
    raw = json.loads(path.read_text("utf-8") if path else resources.files("devices.data").joinpath("wanli.json").read_text("utf-8"))
    return hierarchy_from_dict(raw)


def hierarchy_from_dict(raw: dict[str, Any]) -> Hierarchy:
    areas: dict[str, Area] = {}
    communities: dict[str, Community] = {}
    buildings: dict[str, Building] = {}
    for a in raw["areas"]:
        for c in a["communities"]:
            for b in c["buildings"]:
                buildings[b["id"]] = Building(community_id=c["id"], **b)
            communities[c["id"]] = Community(
                id=c["id"], code=c["code"], name=c["name"], area_id=a["id"], road=c.get("road", ""),
                property=c.get("property", ""), police=c.get("police", ""),
                building_ids=tuple(b["id"] for b in c["buildings"]),
            )
        areas[a["id"]] = Area(a["id"], a["name"], a.get("patroller", ""), tuple(c["id"] for c in a["communities"]))
    stations = {
        s["id"]: FireStation(s["id"], s["name"], s["community"], tuple(s["covers"]), s.get("x", 0.0), s.get("y", 0.0))
        for s in raw.get("fire_stations", [])
    }
    street = raw["street"]
    return Hierarchy(raw.get("district", {}), street["id"], street["name"], street.get("ops_centre", ""),
                     areas, communities, buildings, stations)
