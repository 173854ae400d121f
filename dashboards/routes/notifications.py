"""Who has been told of an incident: its notices in the outbox, by escalation step. Read only."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter
from sqlalchemy import select

from alerts.escalation import STAND_DOWN_ROLE
from alerts.notify.base import mask
from alerts.notify.store import notify_attempts_table
from alerts.outbox import notifications_table
from dashboards.auth import VIEWER_ONLY, Viewer
from dashboards.building_schemas import NotificationPublic
from dashboards.deps import Ctx
from dashboards.personal_data import may_see_household_recipients
from dashboards.station_scope import StationScope
from dashboards.schemas import ms_to_dt
from devices.hierarchy import ROLE_LABELS, Tier
from foundation.errors import NotFound

router = APIRouter(prefix="/api/incidents", tags=["incidents"], dependencies=VIEWER_ONLY)
HIDDEN = "住户家属（hidden）"
ROLE_ZH = ROLE_LABELS | {STAND_DOWN_ROLE: "微型消防站（撤销派单）"}
TIER_ZH = {t.name.lower(): t.label_zh for t in Tier} | {"fire_station": "微型消防站", "household": "住户家属"}


@router.get("/{incident_id}/notifications", response_model=list[NotificationPublic])
def incident_notifications(ctx: Ctx, who: Viewer, scope: StationScope, incident_id: str) -> list[NotificationPublic]:
    """Everyone the escalation told (``sent_at`` empty: not yet delivered), first step first; one row per person.

    The same notice may go out on MQTT and to the webhook: one person, listed once, sent when either went.
    Then every attempt to reach a person's phone (``attempt_id`` set): its channel, masked address and status.
    The wall gets the same rows over the live stream (``notices`` events, dashboards/routes/live.py).
    """
    if scope is not None and incident_id not in scope:
        raise NotFound("incident", incident_id)  # a station sees its own dispatches' incidents only
    ctx.incidents.get(incident_id)  # 404 for an unknown incident
    return told_of(ctx, [incident_id], may_see_household_recipients(who))[incident_id]


def told_of(ctx: Ctx, incident_ids: Sequence[str], family_names: bool) -> dict[str, list[NotificationPublic]]:
    """Who was told of each incident (the rows above, for several incidents in two queries); an incident with no
    notices has an empty list. ``family_names``: whether the caller may see household members' names
    (``may_see_household_recipients``); without it they read as HIDDEN, their addresses empty."""
    told: dict[str, list[NotificationPublic]] = {i: [] for i in incident_ids}
    if not told:
        return told
    wanted = list(told)
    t = notifications_table
    q = select(t.c.incident_id, t.c.step, t.c.tier, t.c.place_id, t.c.role, t.c.recipient, t.c.channel,
               t.c.created_ms, t.c.sent_ms, t.c.dispatch_id).where(t.c.incident_id.in_(wanted)).order_by(t.c.id)
    a = notify_attempts_table
    with ctx.incidents.transaction() as conn:
        rows = conn.execute(q).all()
        attempts = conn.execute(a.select().where(a.c.incident_id.in_(wanted)).order_by(a.c.id)).mappings().all()
    seen: dict[tuple[str, int, str, str, str, str], NotificationPublic] = {}
    for incident_id, step, tier, place_id, role, recipient, channel, created_ms, sent_ms, dispatch_id in rows:
        key = (incident_id, step, tier, place_id, role, recipient)
        if key in seen:
            if sent_ms is not None and seen[key].sent_at is None:
                seen[key].sent_at = ms_to_dt(sent_ms)
                seen[key].status = "sent"
            continue
        seen[key] = row = NotificationPublic(
            step=step, tier=tier, tier_zh=TIER_ZH.get(tier, tier), place_id=place_id, role=role,
            role_zh=ROLE_ZH.get(role, role),
            recipient=recipient if family_names or tier != "household" else HIDDEN, channel=channel,
            created_at=ms_to_dt(created_ms), sent_at=ms_to_dt(sent_ms), dispatch_id=dispatch_id,  # type: ignore[arg-type]
            status="sent" if sent_ms is not None else "queued")
        told[incident_id].append(row)
    for r in attempts:
        hidden = not family_names and r["tier"] == "household"  # a family's names and numbers: by role only
        told[r["incident_id"]].append(NotificationPublic(
            step=r["step"], tier=r["tier"], tier_zh=TIER_ZH.get(r["tier"], r["tier"]), place_id=r["place_id"],
            role=r["role"], role_zh=ROLE_ZH.get(r["role"], r["role"]),
            recipient=HIDDEN if hidden else r["person"], channel=r["channel"],
            created_at=ms_to_dt(r["created_ms"]), sent_at=ms_to_dt(r["sent_ms"]), dispatch_id="",  # type: ignore[arg-type]
            status=r["status"], attempt_id=r["id"], address="" if hidden else mask(r["address"]), provider=r["provider"],
            due_at=ms_to_dt(r["due_ms"]), delivered_at=ms_to_dt(r["delivered_ms"]),
            answered_at=ms_to_dt(r["answered_ms"]), answer=r["answer"], error=r["error"], drill=r["drill"]))
    return told
