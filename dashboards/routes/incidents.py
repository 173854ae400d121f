from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status

from dashboards.accounts import Role
from dashboards.auth import VIEWER_ONLY, actor_of
from dashboards.deps import Ctx
from dashboards.station_scope import StationBound, StationScope, check_answering_station
from alerts.incidents import Action
from dashboards.schemas import AuditEntryPublic, IncidentActionRequest, IncidentDetail, IncidentPublic

router = APIRouter(prefix="/api/incidents", tags=["incidents"], dependencies=VIEWER_ONLY)

# A responder's app acknowledges, reports arrival and adds notes; closing the loop (resolve, verify,
# false alarm, merge) and dispatching stay with the operations centre.
RESPONDER_ACTIONS = frozenset({Action.ACKNOWLEDGE, Action.ARRIVE, Action.NOTE})


@router.get("", response_model=list[IncidentPublic])
def list_incidents(ctx: Ctx, scope: StationScope, state: Annotated[list[str] | None, Query()] = None,
                   building_id: str = "", active: bool = False,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[IncidentPublic]:
    """Incidents, newest change first. ``active=true`` gives the live wall's set. A station-bound responder
    sees only the incidents dispatched to its stations."""
    if active:
        found = ctx.alerts.active()
        if building_id:
            found = [i for i in found if i.location.building_id == building_id]
    elif scope is None:
        found = ctx.incidents.list(state or (), building_id, limit)
    else:  # a station's own incidents: a few hundred at most, read by id
        found = sorted((i for i in map(ctx.incidents.get, scope) if (not state or i.state.value in state)
                        and (not building_id or i.location.building_id == building_id)),
                       key=lambda i: (-i.updated_ms, i.id))
    return [IncidentPublic.of(i) for i in found if scope is None or i.id in scope][:limit]


@router.get("/{incident_id}", response_model=IncidentDetail)
def get_incident(ctx: Ctx, scope: StationScope, incident_id: str) -> IncidentDetail:
    if scope is not None and incident_id not in scope:  # as if absent: a station learns nothing of others' incidents
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"事件 {incident_id} 不存在或未派给本站（not found）")
    incident = ctx.incidents.get(incident_id)
    audit = [AuditEntryPublic.of(a) for a in ctx.incidents.audit(incident_id)]
    return IncidentDetail(**IncidentPublic.of(incident).model_dump(), audit=audit)


@router.post("/{incident_id}/actions", response_model=IncidentPublic)
def act_on_incident(ctx: Ctx, request: Request, incident_id: str, body: IncidentActionRequest,
                    who: StationBound) -> IncidentPublic:
    """Acknowledge, dispatch, arrive, resolve, verify (close), mark false alarm, merge, or add a note.

    Operators may take every action; responders (their apps' tokens) acknowledge, arrive and add notes.
    A responder's credential is bound to its stations: it acts only on incidents dispatched to them,
    and answers only as one of them (403 otherwise). The audit trail names the caller's credential,
    never anything the request says.
    """
    if not who.may(Role.OPERATOR) and body.action not in RESPONDER_ACTIONS:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"权限不足：处置人员只能确认、到场和备注（a responder may not {body.action.value}）")
    check_answering_station(request, who, incident_id, body.station_id)
    if body.station_id or body.dispatch_id:  # a micro fire station's answer: only to its own dispatch (409 otherwise)
        return IncidentPublic.of(ctx.alerts.answer_dispatch(incident_id, body.station_id, body.dispatch_id, body.action,
                                                            actor_of(who, body.actor), ctx.clock_ms()))
    return IncidentPublic.of(ctx.alerts.act(incident_id, body.action, actor_of(who, body.actor), body.note,
                                            ctx.clock_ms()))
