"""Who has been told of an incident: its notices in the outbox, by escalation step. Read only."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from alerts.escalation import STAND_DOWN_ROLE
from alerts.outbox import notifications_table
from dashboards.auth import VIEWER_ONLY
from dashboards.building_schemas import NotificationPublic
from dashboards.deps import Ctx
from dashboards.schemas import ms_to_dt
from devices.hierarchy import ROLE_LABELS, Tier

router = APIRouter(prefix="/api/incidents", tags=["incidents"], dependencies=VIEWER_ONLY)
ROLE_ZH = ROLE_LABELS | {STAND_DOWN_ROLE: "微型消防站（撤销派单）"}
TIER_ZH = {t.name.lower(): t.label_zh for t in Tier} | {"fire_station": "微型消防站", "household": "住户家属"}


@router.get("/{incident_id}/notifications", response_model=list[NotificationPublic])
def incident_notifications(ctx: Ctx, incident_id: str) -> list[NotificationPublic]:
    """Everyone the escalation told (``sent_at`` empty: not yet delivered), first step first; one row per person.

    The same notice may go out on MQTT and to the webhook: one person, listed once, sent when either went.
    """
    ctx.incidents.get(incident_id)  # 404 for an unknown incident
    t = notifications_table
    q = select(t.c.step, t.c.tier, t.c.place_id, t.c.role, t.c.recipient, t.c.channel, t.c.created_ms, t.c.sent_ms,
               t.c.dispatch_id).where(t.c.incident_id == incident_id).order_by(t.c.id)
    with ctx.incidents.transaction() as conn:
        rows = conn.execute(q).all()
    seen: dict[tuple[int, str, str, str, str], NotificationPublic] = {}
    for step, tier, place_id, role, recipient, channel, created_ms, sent_ms, dispatch_id in rows:
        key = (step, tier, place_id, role, recipient)
        if key in seen:
            if sent_ms is not None and seen[key].sent_at is None:
                seen[key].sent_at = ms_to_dt(sent_ms)
            continue
        seen[key] = NotificationPublic(
            step=step, tier=tier, tier_zh=TIER_ZH.get(tier, tier), place_id=place_id, role=role,
            role_zh=ROLE_ZH.get(role, role), recipient=recipient, channel=channel,
            created_at=ms_to_dt(created_ms), sent_at=ms_to_dt(sent_ms), dispatch_id=dispatch_id)  # type: ignore[arg-type]
    return list(seen.values())
