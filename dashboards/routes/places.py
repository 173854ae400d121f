from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from dashboards.auth import VIEWER_ONLY, Viewer
from dashboards.deps import Ctx
from dashboards.personal_data import households_for
from dashboards.schemas import BuildingDetail

router = APIRouter(prefix="/api", tags=["places"], dependencies=VIEWER_ONLY)


@router.get("/hierarchy")
def hierarchy(ctx: Ctx) -> dict[str, Any]:
    """The street's tree (areas → communities → buildings with their plan coordinates) and its fire stations."""
    h = ctx.registry.hierarchy
    return {
        "district": {"id": h.district_id, "name": h.district_name},
        "street": {"id": h.street_id, "name": h.street_name},
        "areas": [
            {"id": a.id, "name": a.name, "communities": [
                {"id": c.id, "name": c.name, "code": c.code, "road": c.road, "buildings": [
                    {"id": b.id, "name": b.name, "floors": b.floors, "units_per_floor": b.units_per_floor,
                     "x": b.x, "y": b.y} for b in (h.buildings[bid] for bid in c.building_ids)]}
                for c in (h.communities[cid] for cid in a.community_ids)]}
            for a in h.areas.values()
        ],
        "fire_stations": [{"id": s.id, "name": s.name, "community_id": s.community_id, "x": s.x, "y": s.y,
                           "covers": list(s.covers)} for s in h.fire_stations.values()],
    }


@router.get("/buildings/{building_id}", response_model=BuildingDetail)
def building(ctx: Ctx, request: Request, who: Viewer, building_id: str) -> BuildingDetail:
    """A building's place in the street, who answers at each tier up to the district, and its micro fire stations.

    Its households (residents, family phones) only for operators and for a responder whose station was
    dispatched to an active incident there; each such read is kept in the access audit."""
    return households_for(request, ctx, who, BuildingDetail.of(ctx.registry.hierarchy, building_id))
