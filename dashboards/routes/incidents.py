from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from alerts import escalation
from alerts.incidents import Action, Incident, Severity, State
from dashboards.accounts import Principal, Role
from dashboards.auth import VIEWER_ONLY, actor_of, require
from dashboards.deps import Ctx
from dashboards.routes.exports import _CSV_RESPONSE, INCIDENT_COLUMNS, _csv_response, _incident_row
from dashboards.schemas import AuditEntryPublic, IncidentActionRequest, IncidentDetail, IncidentPublic, ms_to_dt
from dashboards.station_scope import StationBound, StationScope, check_answering_station
from devices.hierarchy import ROLE_LABELS, Responder
from foundation.errors import Invalid

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


OUTCOMES = tuple(s.value for s in State if not s.is_active)


def _history(ctx: Ctx, since: datetime | None, until: datetime | None, building_id: str, community_id: str, kind: str,
             severity: str, outcome: str, q: str, limit: int) -> list[Incident]:
    if severity and severity not in {s.value for s in Severity}:
        raise Invalid(f"未知的级别 {severity!r}（severity is one of {', '.join(s.value for s in Severity)}）")
    if outcome and outcome not in OUTCOMES:
        raise Invalid(f"未知的结果 {outcome!r}（outcome is one of {', '.join(OUTCOMES)}）")
    if since and until and since >= until:
        raise Invalid("起始时间须早于结束时间（since must be before until）")
    ms = lambda d: None if d is None else int(d.timestamp() * 1000)  # noqa: E731
    return ctx.incidents.history(ms(since), ms(until), building_id, community_id, kind, severity, outcome, q.strip(),
                                 limit)


@router.get("/history", response_model=list[IncidentPublic])
def incident_history(ctx: Ctx, since: datetime | None = None, until: datetime | None = None, building_id: str = "",
                     community_id: str = "", kind: str = "", severity: str = "", outcome: str = "",
                     q: Annotated[str, Query(max_length=100)] = "",
                     limit: Annotated[int, Query(ge=1, le=5000)] = 500) -> list[IncidentPublic]:
    """Ended incidents (closed, false alarm, merged) opened between ``since`` and ``until``, newest change first,
    by building, community, device kind, severity, outcome and words of the title, device or id."""
    found = _history(ctx, since, until, building_id, community_id, kind, severity, outcome, q, limit)
    return [IncidentPublic.of(i) for i in found]


@router.get("/history.csv", response_class=StreamingResponse, responses=_CSV_RESPONSE)
def incident_history_csv(ctx: Ctx, since: datetime | None = None, until: datetime | None = None,
                         building_id: str = "", community_id: str = "", kind: str = "", severity: str = "",
                         outcome: str = "", q: Annotated[str, Query(max_length=100)] = "",
                         limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000) -> StreamingResponse:
    """The history search's incidents as CSV (UTF-8 with a byte-order mark, the columns of /api/incidents.csv)."""
    found = _history(ctx, since, until, building_id, community_id, kind, severity, outcome, q, limit)
    return _csv_response("incident-history", ctx, INCIDENT_COLUMNS, map(_incident_row, found))


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
    if body.action is Action.MERGE and body.into:  # into a group incident, which carries it from then on
        return IncidentPublic.of(ctx.alerts.merge(incident_id, body.into, actor_of(who, body.actor), body.note,
                                                  ctx.clock_ms()))
    return IncidentPublic.of(ctx.alerts.act(incident_id, body.action, actor_of(who, body.actor), body.note,
                                            ctx.clock_ms()))


class SplitRequest(BaseModel):
    device_id: str = Field(min_length=1, max_length=64, description="the member device to handle on its own")


@router.post("/{incident_id}/split", response_model=IncidentPublic)
def split_group(ctx: Ctx, incident_id: str, body: SplitRequest,
                who: Annotated[Principal, Depends(require(Role.OPERATOR))]) -> IncidentPublic:
    """Take a member device out of a group incident: closing the group no longer closes its own incident."""
    return IncidentPublic.of(ctx.alerts.split(incident_id, body.device_id, actor_of(who), ctx.clock_ms()))


class EscalationStepPublic(BaseModel):
    step: int
    tiers: list[str]
    tiers_zh: list[str]
    roles_zh: list[str] = Field(description="empty: every responder at those tiers")
    ack_within_s: int
    fire_station: bool
    household: bool
    status: str = Field(description="done (told), current (its deadline runs), next, or stopped (someone took it)")
    deadline_at: datetime | None = Field(description="the current step's acknowledgement deadline")


@router.get("/{incident_id}/escalation", response_model=list[EscalationStepPublic])
def incident_escalation(ctx: Ctx, incident_id: str) -> list[EscalationStepPublic]:
    """The incident's escalation policy step by step: who each step tells, what has been done, the deadline."""
    i = ctx.alerts.find_active(incident_id) or ctx.incidents.get(incident_id)
    policy = escalation.policy_for(i.category, i.severity, i.condition, ctx.alerts.policies)
    on_step = min(i.escalation_step, len(policy.steps) - 1)  # past the last: the last, repeated
    out = []
    for n, step in enumerate(policy.steps):
        if n <= on_step:
            state = "current" if n == on_step and i.next_deadline_ms is not None else "done"
        else:
            state = "next" if i.state is State.OPEN else "stopped"
        out.append(EscalationStepPublic(
            step=n, tiers=[t.name.lower() for t in step.tiers], tiers_zh=[t.label_zh for t in step.tiers],
            roles_zh=[ROLE_LABELS.get(r, r) for r in step.roles], ack_within_s=step.ack_within_s,
            fire_station=step.fire_station, household=step.household, status=state,
            deadline_at=ms_to_dt(i.next_deadline_ms) if state == "current" else None))  # type: ignore[arg-type]
    return out


class ContactPublic(BaseModel):
    group: str = Field(description="住户 / 楼栋 / 居民区 / 微型消防站")
    role: str
    role_zh: str
    name: str
    phone: str | None = Field(description="only for operators and admins; null for other roles")


@router.get("/{incident_id}/contacts", response_model=list[ContactPublic])
def incident_contacts(ctx: Ctx, incident_id: str,
                      who: Annotated[Principal, Depends(require(Role.VIEWER))]) -> list[ContactPublic]:
    """The people to call about it: the household (resident, family, doctor), the building's and community's
    responders and the covering micro fire station. Phone numbers only for operators (and admins)."""
    i = ctx.alerts.find_active(incident_id) or ctx.incidents.get(incident_id)
    h = ctx.registry.hierarchy
    loc = i.location
    show = who.may(Role.OPERATOR)
    if i.drill:  # a drill rings no real phone, from the screen either: its own contacts only (devices/drill.py)
        drill = ctx.notifier.drill_contacts() if ctx.notifier is not None else []
        return [ContactPublic(group="演练", role="drill", role_zh=f"演练联系人（{c.kind.value}）", name=c.person,
                              phone=(c.address if c.kind.value in ("mobile", "phone") else "") if show else None)
                for c in drill]
    found: list[tuple[str, Responder]] = []
    if loc.building_id and loc.unit:
        home = h.household(loc.building_id, loc.unit)
        if home is not None:
            found.append(("住户", Responder("resident", home.resident, "")))
            found += [("住户", c) for c in home.contacts]
    if loc.building_id in h.buildings:
        b = h.buildings[loc.building_id]
        found += [("楼栋", r) for r in b.responders]
        found += [("居民区", r) for r in h.communities[b.community_id].responders]
        station = h.nearest_station(loc.building_id)
        if station is not None:
            found += [("微型消防站", Responder(r.role, f"{station.name} {r.name}", r.phone)) for r in station.responders]
    return [ContactPublic(group=g, role=r.role, role_zh="住户本人" if r.role == "resident" else r.role_zh, name=r.name,
                          phone=(r.phone or "") if show else None) for g, r in found]
