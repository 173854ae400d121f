"""Which devices a street has, and where: the registration rows of a place, from the kinds' placements.

Each registered kind says where its devices go (``KindSlice.placement``: per building, per
household of an elderly person living alone, per micro fire station); this walks a street's
hierarchy and asks them. The generated street (``devices/street_generator.py``) and the simulated
populations (``simulators/population.py``) both use it, so the two agree by construction. The
whole generated street is 50,615 devices.

Rows come building by building (each kind in registration order), then the households' devices,
then the micro fire stations.
"""

from __future__ import annotations

from collections.abc import Iterable

from devices.hierarchy import Building, Hierarchy
from devices.kind_slice import Row, building_code
from devices.kinds import SLICES
from foundation.errors import NotFound

__all__ = ["Row", "building_code", "building_rows", "household_rows", "place_rows"]


def building_rows(building: Building, index_in_community: int) -> list[Row]:
    """The devices of the building itself (not its households'), every kind in registration order."""
    return [row for s in SLICES.values() if s.placement.building for row in s.placement.building(building, index_in_community)]


def household_rows(hierarchy: Hierarchy, building_id: str) -> list[Row]:
    """The devices in the building's households of elderly people living alone, unit by unit."""
    rows: list[Row] = []
    for (bid, _unit), home in sorted(hierarchy.households.items()):
        if bid == building_id:
            rows += [row for s in SLICES.values() if s.placement.household for row in s.placement.household(home)]
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
    in_households: list[Row] = []
    for community in hierarchy.communities.values():
        take_all = whole_street or community.id in wanted_c
        for i, bid in enumerate(community.building_ids):
            if take_all or bid in wanted_b:
                rows += building_rows(hierarchy.buildings[bid], i)
                in_households += household_rows(hierarchy, bid)
    rows += in_households
    first = {c.id: c.building_ids[0] for c in hierarchy.communities.values() if c.building_ids}
    for station in hierarchy.fire_stations.values():
        home = first.get(station.community_id, "")
        if whole_street or station.community_id in wanted_c or home in wanted_b or wanted_b & set(station.covers):
            rows += [row for s in SLICES.values() if s.placement.station for row in s.placement.station(station, home)]
    return rows
