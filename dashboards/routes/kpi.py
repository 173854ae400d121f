from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter

from dashboards.deps import Ctx

router = APIRouter(prefix="/api/kpi", tags=["kpi"])

ACK_WITHIN_S = 60  # micro fire stations: acknowledge within 1 minute
ARRIVE_WITHIN_S = 180  # and reach the scene within 3


@router.get("")
def kpi(ctx: Ctx) -> dict[str, Any]:
    """What the wall's KPI strip shows: active incidents by state, tier and severity, and the 1-minute / 3-minute rule."""
    active = ctx.alerts.active()
    dispatches = ctx.alerts.response_times()
    acked = [d["ack_s"] for d in dispatches if d["ack_s"] is not None]
    arrived = [d["arrive_s"] for d in dispatches if d["arrive_s"] is not None]
    return {
        "active": len(active),
        "by_state": dict(Counter(i.state.value for i in active)),
        "by_tier": dict(Counter(i.tier or "none" for i in active)),
        "by_severity": dict(Counter(i.severity.value for i in active)),
        "dispatches": len(dispatches),
        "acknowledged_within_1_min": sum(1 for s in acked if s <= ACK_WITHIN_S),  # type: ignore[operator]
        "acknowledged": len(acked),
        "arrived_within_3_min": sum(1 for s in arrived if s <= ARRIVE_WITHIN_S),  # type: ignore[operator]
        "arrived": len(arrived),
        "recent_dispatches": dispatches[-50:],
    }
