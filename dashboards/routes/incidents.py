from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status

from dashboards.accounts import Principal, Role
from dashboards.auth import VIEWER_ONLY, actor_of, require
from dashboards.deps import Ctx
from alerts.incidents import Action
from dashboards.schemas import AuditEntryPublic, IncidentActionRequest, IncidentDetail, IncidentPublic

router = APIRouter(prefix="/api/incidents", tags=["incidents"], dependencies=VIEWER_ONLY)

# A responder's app acknowledges, reports arrival and adds notes; closing the loop (resolve, verify,
# false alarm, merge) and dispatching stay with the operations centre.
RESPONDER_ACTIONS = frozenset({Action.ACKNOWLEDGE, Action.ARRIVE, Action.NOTE})


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
def act_on_incident(ctx: Ctx, incident_id: str, body: IncidentActionRequest,
                    who: Annotated[Principal, Depends(require(Role.OPERATOR, Role.RESPONDER))]) -> IncidentPublic:
    """Acknowledge, dispatch, arrive, resolve, verify (close), mark false alarm, merge, or add a note.

    Operators may take every action; responders (their apps' tokens) acknowledge, arrive and add notes.
    The audit trail names the caller's account, not anything the request says.
    """
    if not who.may(Role.OPERATOR) and body.action not in RESPONDER_ACTIONS:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"权限不足：处置人员只能确认、到场和备注（a responder may not {body.action.value}）")
    if body.station_id or body.dispatch_id:  # a micro fire station's answer: only to its own dispatch (409 otherwise)
        return IncidentPublic.of(ctx.alerts.answer_dispatch(incident_id, body.station_id, body.dispatch_id, body.action,
                                                            actor_of(who, body.actor), ctx.clock_ms()))
    return IncidentPublic.of(ctx.alerts.act(incident_id, body.action, actor_of(who, body.actor), body.note,
                                            ctx.clock_ms()))
