"""What a station-bound credential may see and answer: the incidents dispatched to its stations.

A responder's token (a micro fire station's duty app) or account is bound to its station(s)
(``stations`` on the token or account). It reads only the incidents the engine dispatched to
one of them, acts only on those, and answers a dispatch only as one of them; anything else is
a 403 that says why, counted in ``wanli_access_refused_total{reason="station"}`` and kept in the
access audit. Operators and admins act street-wide and are not bound.

"Dispatched to" is what the notification outbox recorded: a row with a dispatch id whose place
is the station (the same record the engine itself trusts when a station answers over MQTT).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import select

from alerts.outbox import CHANNEL_MQTT, notifications_table
from dashboards.access_audit import AccessEvent
from dashboards.accounts import Principal, Role
from dashboards.auth import get_access, require
from dashboards.deps import Ctx

REFUSED_REASON = "station"


def incidents_dispatched_to(ctx: Ctx, stations: Iterable[str]) -> set[str]:
    """Ids of every incident dispatched to one of these stations."""
    wanted = list(stations)
    if not wanted or ctx.engine is None:
        return set()
    t = notifications_table
    q = select(t.c.incident_id).where(t.c.place_id.in_(wanted), t.c.dispatch_id != "",
                                      t.c.channel == CHANNEL_MQTT).distinct()
    with ctx.engine.connect() as conn:
        return {r[0] for r in conn.execute(q)}


def was_dispatched_to(ctx: Ctx, incident_id: str, stations: Iterable[str]) -> bool:
    wanted = set(stations)
    outbox = ctx.alerts.outbox
    if outbox is None or not wanted:
        return False
    return any(r.dispatch_id and r.place_id in wanted for r in outbox.for_incident(incident_id))


def refuse(request: Request, who: Principal, incident_id: str, why: str) -> HTTPException:
    """The 403 for a station-bound credential, counted and audited."""
    access = get_access(request)
    access.refused(REFUSED_REASON)
    access.audit.record(AccessEvent.STATION_REFUSED, access.clock_ms(), actor=who.actor, subjects=[incident_id],
                        source=request.client.host if request.client else "", detail=why[:400])
    return HTTPException(status.HTTP_403_FORBIDDEN, why)


def visible_incidents(ctx: Ctx, who: Annotated[Principal, Depends(require(Role.VIEWER))]) -> set[str] | None:
    """None: the caller sees every incident; otherwise the ids it may see (those dispatched to its stations)."""
    return incidents_dispatched_to(ctx, who.stations) if who.station_bound else None


def check_station_binding(request: Request, ctx: Ctx, incident_id: str,
                          who: Annotated[Principal, Depends(require(Role.OPERATOR, Role.RESPONDER))]) -> Principal:
    """For the incident action route: a station-bound caller acts only on its stations' dispatches, as one of them."""
    if not who.station_bound:
        return who
    if not who.stations:
        raise refuse(request, who, incident_id, "此处置凭证未绑定微型消防站，不能处置任何事件"
                                                "（this responder credential is bound to no station）")
    ctx.incidents.get(incident_id)  # 404 for no such incident (its id tells nothing of what happened)
    if not was_dispatched_to(ctx, incident_id, who.stations):
        raise refuse(request, who, incident_id, f"事件 {incident_id} 未派给本站（{'、'.join(who.stations)}），无权处置"
                                                f"（incident {incident_id} was not dispatched to "
                                                f"{', '.join(who.stations)}）")
    return who


def check_answering_station(request: Request, who: Principal, incident_id: str, station_id: str) -> None:
    """A station-bound caller answers a dispatch only as one of its own stations."""
    if who.station_bound and station_id and station_id not in who.stations:
        raise refuse(request, who, incident_id, f"只能以本站（{'、'.join(who.stations)}）身份答复，不能代 {station_id}"
                                                f"（this credential answers only for {', '.join(who.stations)}）")


StationScope = Annotated[set[str] | None, Depends(visible_incidents)]
StationBound = Annotated[Principal, Depends(check_station_binding)]
