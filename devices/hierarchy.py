"""The street's response hierarchy as data: district → street → area → community → building → unit.

Responders hang on the nodes: the district's ops centre and fire rescue (119), the street's
ops centre, the area's grid patroller, the community's property company, residents'
committee and police, the building-group leader, and, for an elderly person living alone,
the household's family and community doctor. Micro fire stations cover buildings.

Loaded once from JSON (``devices/data/wanli.json`` by default, or a generated street);
immutable after that, so every part of the system can hold it and ask it questions
without locks. Coordinates are metres in the street's own plan.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import IntEnum
from importlib import resources
from pathlib import Path
from typing import Any

from foundation.errors import NotFound


class Tier(IntEnum):
    """The tiers an incident climbs (分级吹哨): lowest first."""

    BUILDING = 1
    COMMUNITY = 2
    AREA = 3
    STREET = 4
    DISTRICT = 5

    @property
    def label_zh(self) -> str:
        return {1: "楼栋", 2: "居民区", 3: "片区", 4: "街道", 5: "区"}[self.value]


ROLE_LABELS = {
    "building_leader": "楼组长", "property": "物业", "residents_committee": "居委会", "community_police": "社区民警",
    "grid_patroller": "网格巡查员", "area_leader": "片区长", "street_ops": "街道城运中心", "street_safety": "街道平安办",
    "tech_duty": "城运中心技术值班",
    "district_ops": "区城运中心", "fire_rescue": "消防救援 119", "emergency_management": "区应急管理局",
    "fire_station_duty": "微型消防站", "family": "家属", "community_doctor": "社区医生",
}


@dataclass(frozen=True, slots=True)
class Responder:
    role: str
    name: str
    phone: str = ""

    @property
    def role_zh(self) -> str:
        return ROLE_LABELS.get(self.role, self.role)


Responders = tuple[Responder, ...]


@dataclass(frozen=True, slots=True)
class Building:
    id: str
    name: str
    community_id: str
    floors: int
    units_per_floor: int
    x: float = 0.0
    y: float = 0.0
    responders: Responders = ()

    @property
    def high_rise(self) -> bool:
        return self.floors >= 10  # 高层住宅: ten floors or more (GB 50016 counts by height; floors stand in)


@dataclass(frozen=True, slots=True)
class Community:
    id: str
    code: str
    name: str
    area_id: str
    road: str = ""
    building_ids: tuple[str, ...] = ()
    responders: Responders = ()


@dataclass(frozen=True, slots=True)
class Area:
    id: str
    name: str
    community_ids: tuple[str, ...] = ()
    responders: Responders = ()


@dataclass(frozen=True, slots=True)
class FireStation:
    id: str
    name: str
    community_id: str
    covers: tuple[str, ...]
    x: float = 0.0
    y: float = 0.0
    responders: Responders = ()


@dataclass(frozen=True, slots=True)
class Household:
    building_id: str
    unit: str
    resident: str
    contacts: Responders = ()


@dataclass(frozen=True, slots=True)
class Location:
    """Where something is, with names for people and ids for machines."""

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
            parts.append(f"{self.floor}层" if self.floor > 0 else f"地下{-self.floor}层")
        if self.unit:
            parts.append(f"{self.unit}室")
        return " ".join(p for p in parts if p) or self.street


@dataclass(frozen=True, slots=True)
class TierContacts:
    """One step of the chain up from a place: the node at that tier and who answers there."""

    tier: Tier
    place_id: str
    place: str
    responders: Responders


@dataclass(frozen=True)
class Hierarchy:
    district_id: str
    district_name: str
    district_responders: Responders
    street_id: str
    street_name: str
    street_responders: Responders
    areas: dict[str, Area]
    communities: dict[str, Community]
    buildings: dict[str, Building]
    fire_stations: dict[str, FireStation] = field(default_factory=dict)
    households: dict[tuple[str, str], Household] = field(default_factory=dict)

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

    def chain(self, building_id: str) -> list[TierContacts]:
        """From the building up to the district: who answers at each tier, lowest first."""
        if not building_id:
            return self._upper_chain()
        b = self.building(building_id)
        c = self.communities[b.community_id]
        a = self.areas[c.area_id]
        return [
            TierContacts(Tier.BUILDING, b.id, b.name, b.responders),
            TierContacts(Tier.COMMUNITY, c.id, c.name, c.responders),
            TierContacts(Tier.AREA, a.id, a.name, a.responders),
            *self._upper_chain(),
        ]

    def _upper_chain(self) -> list[TierContacts]:
        return [
            TierContacts(Tier.STREET, self.street_id, self.street_name, self.street_responders),
            TierContacts(Tier.DISTRICT, self.district_id, self.district_name, self.district_responders),
        ]

    def responders_at(self, building_id: str, tier: Tier) -> Responders:
        return next(t.responders for t in self.chain(building_id) if t.tier is tier)

    def household(self, building_id: str, unit: str) -> Household | None:
        return self.households.get((building_id, unit))

    def stations_covering(self, building_id: str) -> list[FireStation]:
        return [s for s in self.fire_stations.values() if building_id in s.covers]

    def nearest_station(self, building_id: str) -> FireStation | None:
        """The nearest micro fire station that covers the building; the nearest of all if none covers it."""
        b = self.building(building_id)
        candidates = self.stations_covering(building_id) or list(self.fire_stations.values())
        return min(candidates, key=lambda s: (math.hypot(s.x - b.x, s.y - b.y), s.id), default=None)

    def distance_m(self, station: FireStation, building_id: str) -> float:
        b = self.building(building_id)
        return math.hypot(station.x - b.x, station.y - b.y)


def load_hierarchy(path: Path | None = None) -> Hierarchy:
    text = path.read_text("utf-8") if path else resources.files("devices.data").joinpath("wanli.json").read_text("utf-8")
    return hierarchy_from_dict(json.loads(text))


def _responders(node: dict[str, Any]) -> Responders:
    return tuple(Responder(r["role"], r["name"], r.get("phone", "")) for r in node.get("responders", ()))


def hierarchy_from_dict(raw: dict[str, Any]) -> Hierarchy:
    areas: dict[str, Area] = {}
    communities: dict[str, Community] = {}
    buildings: dict[str, Building] = {}
    for a in raw["areas"]:
        for c in a["communities"]:
            for b in c["buildings"]:
                buildings[b["id"]] = Building(b["id"], b["name"], c["id"], b["floors"], b["units_per_floor"],
                                              b.get("x", 0.0), b.get("y", 0.0), _responders(b))
            communities[c["id"]] = Community(c["id"], c["code"], c["name"], a["id"], c.get("road", ""),
                                             tuple(b["id"] for b in c["buildings"]), _responders(c))
        areas[a["id"]] = Area(a["id"], a["name"], tuple(c["id"] for c in a["communities"]), _responders(a))
    stations = {
        s["id"]: FireStation(s["id"], s["name"], s["community"], tuple(s["covers"]), s.get("x", 0.0), s.get("y", 0.0),
                             _responders(s))
        for s in raw.get("fire_stations", [])
    }
    households = {
        (h["building"], h["unit"]): Household(h["building"], h["unit"], h["resident"],
                                              tuple(Responder(c["role"], c["name"], c.get("phone", ""))
                                                    for c in h.get("contacts", ())))
        for h in raw.get("households", [])
    }
    district, street = raw["district"], raw["street"]
    return Hierarchy(district["id"], district["name"], _responders(district), street["id"], street["name"],
                     _responders(street), areas, communities, buildings, stations, households)
