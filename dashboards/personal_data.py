"""Residents' personal data by role: households' names, ages, living-alone flags and family phones.

Shown only to those who act on them: operators (and admins), and a station-bound responder for the
buildings of active incidents dispatched to its stations. Testers, maintainers, viewers and any
other responder get the building without its households (``households_hidden: true`` in spirit:
the list is empty and ``households_shown`` says why). Every read that shows households is kept in
the access audit, one row per household (who, when, which household), ``GET /api/access-events``.
"""

from __future__ import annotations

from fastapi import Request

from dashboards.access_audit import AccessEvent
from dashboards.accounts import Principal, Role
from dashboards.auth import get_access
from dashboards.deps import AppContext
from dashboards.schemas import BuildingDetail
from dashboards.station_scope import incidents_dispatched_to


def may_see_households(ctx: AppContext, who: Principal, building_id: str) -> bool:
    if who.may(Role.OPERATOR):
        return True
    if who.station_bound and who.stations:
        mine = incidents_dispatched_to(ctx, who.stations)
        return any(i.id in mine and i.location.building_id == building_id for i in ctx.alerts.active())
    return False


def households_for(request: Request, ctx: AppContext, who: Principal, detail: BuildingDetail) -> BuildingDetail:
    """The building as this caller may see it; a read that shows households is audited."""
    if not may_see_households(ctx, who, detail.id):
        return detail.model_copy(update={"households": []})
    if detail.households:
        access = get_access(request)
        access.audit.record(AccessEvent.PERSONAL_DATA_READ, access.clock_ms(), actor=who.actor,
                            subjects=[f"{detail.id}-{h.unit}" for h in detail.households],
                            source=request.client.host if request.client else "", detail=request.url.path)
    return detail


def may_see_household_recipients(who: Principal) -> bool:
    """Family members told of an incident (the notifications list) are personal data too."""
    return who.may(Role.OPERATOR) or who.station_bound
