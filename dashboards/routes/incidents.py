from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dashboards.deps import Ctx
from dashboards.schemas import AuditEntryPublic, IncidentActionRequest, IncidentDetail, IncidentPublic

router = APIRouter(prefix="/api/incidents", tags=["incidents"])


@router.get("", response_model=list[IncidentPublic])
def list_incidents(ctx: Ctx, state: Annotated[list[str] | None, Query()] = None, building_id: str = "",
                   active: bool = False, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[IncidentPublic]:
    """Incidents, newest change first. ``active=true`` gives the live wall's set."""
    if active:
        found = ctx.alerts.active()
        if building_id:
            found = [i for i in found if i.location.building_id == building_id]
        return [IncidentPublic.of(i) for i in found[:limit]]
    return [IncidentPublic.of(i) for i in ctx.incidents.list(state or (), building_id, limit)]


@router.get("/{incident_id}", response_model=IncidentDetail)
def get_incident(ctx: Ctx, incident_id: str) -> IncidentDetail:
    incident = ctx.incidents.get(incident_id)
    audit = [AuditEntryPublic.of(a) for a in ctx.incidents.audit(incident_id)]
    return IncidentDetail(**IncidentPublic.of(incident).model_dump(), audit=audit)


@router.post("/{incident_id}/actions", response_model=IncidentPublic)
def act_on_incident(ctx: Ctx, incident_id: str, body: IncidentActionRequest) -> IncidentPublic:
    """Acknowledge, dispatch, arrive, resolve, verify (close), mark false alarm, merge, or add a note."""
    return IncidentPublic.of(ctx.alerts.act(incident_id, body.action, body.actor, body.note, ctx.clock_ms()))
