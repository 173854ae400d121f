from __future__ import annotations

from collections import Counter, defaultdict
from typing import Annotated

from fastapi import APIRouter, Query

from dashboards import building_profile as bp
from dashboards.auth import VIEWER_ONLY
from dashboards.building_schemas import (
    BuildingFalseAlarms,
    DeviceFigures,
    KpiPublic,
    OverduePublic,
    RuleFigures,
)
from dashboards.deps import Ctx
from dashboards.schemas import ms_to_dt
from devices.drill import is_drill

router = APIRouter(prefix="/api/kpi", tags=["kpi"], dependencies=VIEWER_ONLY)

ACK_WITHIN_S = 60  # micro fire stations: acknowledge within 1 minute
ARRIVE_WITHIN_S = 180  # and reach the scene within 3


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = q * (len(sorted_values) - 1)  # linear between closest ranks, as numpy's default
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return round(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low), 1)


def rule_figures(seconds: list[float], within_s: int, waiting_past: int = 0) -> RuleFigures:
    ordered = sorted(seconds)
    return RuleFigures(within_s=within_s, total=len(ordered), within=sum(1 for s in ordered if s <= within_s),
                       median_s=_percentile(ordered, 0.5), p90_s=_percentile(ordered, 0.9), waiting_past=waiting_past)


@router.get("", response_model=KpiPublic)
def kpi(ctx: Ctx, hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24) -> KpiPublic:
    """The wall's KPI panel: active incidents by tier and state; the 1-minute / 3-minute rule over the last
    ``hours``; the device online rate; overdue rectifications; the false-alarm rate per building."""
    now = ctx.clock_ms()
    # A drill's incidents and dispatches are not the street's: they never count here (devices/drill.py).
    active = [i for i in ctx.alerts.active() if not i.drill]
    since = now - hours * bp.HOUR_MS
    past = [p for p in bp.incidents_since(ctx.incidents, since) if not is_drill(p.device_id)]
    arrivals = bp.first_arrivals(ctx.incidents, since)

    acked = [(p.acknowledged_ms - p.opened_ms) / 1000 for p in past if p.acknowledged_ms is not None]
    unacked_late = sum(1 for i in active if i.acknowledged_ms is None and now - i.opened_ms > ACK_WITHIN_S * 1000)
    arrived = [(arrivals[p.id] - p.opened_ms) / 1000 for p in past if p.id in arrivals]
    # Sent on their way and nobody on scene past 3 minutes (only states before on_scene can still be waiting).
    not_there = sum(1 for i in active if i.state.value in ("dispatched",) and i.id not in arrivals
                    and now - i.opened_ms > ARRIVE_WITHIN_S * 1000)

    by_tier_state: dict[str, dict[str, int]] = defaultdict(dict)
    for (tier, state), n in Counter((i.tier or "none", i.state.value) for i in active).items():
        by_tier_state[tier][state] = n

    counts = ctx.registry.count_health(now_ms=now, drill=False)
    devices = DeviceFigures(**counts, online_rate=round(counts["online"] / counts["total"], 4) if counts["total"] else None)

    rects = [r for r in bp.rectifications(active, ctx.alerts, now) if r.overdue]
    overdue = [OverduePublic(incident_id=r.incident.id, title=r.incident.title, place=r.incident.location.label(),
                             category_zh=r.category_zh, deadline_at=ms_to_dt(r.deadline_ms),  # type: ignore[arg-type]
                             overdue_s=(now - r.deadline_ms) // 1000) for r in rects[:20]]

    h = ctx.registry.hierarchy
    alarms: Counter[str] = Counter()
    false_alarms: Counter[str] = Counter()
    for p in past:
        if p.is_fire_alarm and p.building_id in h.buildings:
            alarms[p.building_id] += 1
            false_alarms[p.building_id] += p.state == "false_alarm"
    false_by_building = sorted(
        (BuildingFalseAlarms(building_id=b, building=h.buildings[b].name,
                             community=h.communities[h.buildings[b].community_id].name, alarms=n,
                             false_alarms=false_alarms[b], rate=round(false_alarms[b] / n, 4))
         for b, n in alarms.items()),
        key=lambda x: (-x.rate, -x.alarms, x.building_id))

    dispatches = [d for d in ctx.alerts.response_times() if not is_drill(str(d["station"]))]
    station_acked = [float(d["ack_s"]) for d in dispatches if d["ack_s"] is not None]  # type: ignore[arg-type]
    station_arrived = [float(d["arrive_s"]) for d in dispatches if d["arrive_s"] is not None]  # type: ignore[arg-type]
    return KpiPublic(
        at=ms_to_dt(now), window_hours=hours,  # type: ignore[arg-type]
        active=len(active),
        by_state=dict(Counter(i.state.value for i in active)),
        by_tier=dict(Counter(i.tier or "none" for i in active)),
        by_severity=dict(Counter(i.severity.value for i in active)),
        by_tier_state=dict(by_tier_state),
        acknowledge=rule_figures(acked, ACK_WITHIN_S, unacked_late),
        arrive=rule_figures(arrived, ARRIVE_WITHIN_S, not_there),
        devices=devices,
        overdue_rectifications=len(rects), overdue=overdue,
        false_alarms_by_building=false_by_building,
        dispatches=len(dispatches),
        acknowledged_within_1_min=sum(1 for s in station_acked if s <= ACK_WITHIN_S), acknowledged=len(station_acked),
        arrived_within_3_min=sum(1 for s in station_arrived if s <= ARRIVE_WITHIN_S), arrived=len(station_arrived),
        recent_dispatches=dispatches[-50:],
    )
