"""The street map, each building's digital risk profile (数字化风险画像) and its telemetry charts. Read only."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated

from fastapi import APIRouter, Query, Request

from alerts.incidents import Incident, Severity
from dashboards import building_profile as bp
from dashboards.auth import VIEWER_ONLY, Viewer
from dashboards.building_schemas import (
    BuildingOnMap,
    BuildingProfile,
    BuildingTelemetry,
    CommunityOnMap,
    CoveragePublic,
    FactorPublic,
    HistoryPublic,
    KindHealthPublic,
    PastIncidentPublic,
    RectificationPublic,
    RiskPublic,
    SeriesPublic,
    StationOnMap,
    StreetMap,
)
from dashboards.deps import Ctx
from dashboards.personal_data import households_for
from dashboards.plan import PlanInput, layout
from dashboards.risk import risk_score
from dashboards.schemas import BuildingDetail, DevicePublic, IncidentPublic, ms_to_dt
from devices.catalog import KINDS
from devices.registry import Health, health
from ingest.retention import chart_resolution

router = APIRouter(prefix="/api", tags=["buildings"], dependencies=VIEWER_ONLY)
SHANGHAI = timezone(timedelta(hours=8))
MAX_ATTENTION = 200
MAX_DETECTOR_SERIES = 8
DETECTOR_POINTS = 60
STATION_POINTS = 2000  # points of one station: its own and every port's (one snapshot is 1 + ports points)
SEVERITY_RANK = {s.value: s.rank for s in Severity}


def _urgent_first(incidents: list[Incident]) -> list[Incident]:
    return sorted(incidents, key=lambda i: (-i.severity.rank, i.opened_ms, i.id))


@router.get("/map", response_model=StreetMap)
def street_map(ctx: Ctx) -> StreetMap:
    """Every building on the street's block plan, coloured by its state now: critical, incident, fault, normal."""
    h, now = ctx.registry.hierarchy, ctx.clock_ms()
    plan = layout([PlanInput(b.id, b.community_id, h.communities[b.community_id].area_id, b.x, b.y)
                   for b in h.buildings.values()])
    active: dict[str, list[Incident]] = {}
    for inc in ctx.alerts.active():
        active.setdefault(inc.location.building_id, []).append(inc)
    devices, faults = bp.devices_by_building(ctx.incidents, now)
    overdue = Counter(r.incident.location.building_id for r in bp.rectifications(ctx.alerts.active(), ctx.alerts, now)
                      if r.overdue)
    buildings = []
    for b in h.buildings.values():
        c = h.communities[b.community_id]
        a = h.areas[c.area_id]
        here = _urgent_first(active.get(b.id, []))
        critical = sum(1 for i in here if i.severity is Severity.CRITICAL)
        p = plan[b.id]
        buildings.append(BuildingOnMap(
            id=b.id, name=b.name, community_id=c.id, community=c.name, area_id=a.id, area=a.name, floors=b.floors,
            high_rise=b.high_rise, x=p.x, y=p.y, derived=p.derived,
            state=bp.building_state(critical, len(here), faults[b.id], devices[b.id]),
            active=len(here), critical=critical,
            top_incident=(f"【演练】{here[0].title}" if here[0].drill else here[0].title) if here else "",
            devices=devices[b.id], faults=faults[b.id], overdue=overdue[b.id]))
    return StreetMap(
        street=h.street_name, buildings=buildings,
        communities=[CommunityOnMap(id=c.id, name=c.name, area_id=c.area_id, area=h.areas[c.area_id].name, road=c.road)
                     for c in h.communities.values()],
        fire_stations=[StationOnMap(id=s.id, name=s.name, x=s.x, y=s.y) for s in h.fire_stations.values()],
        at=ms_to_dt(now))  # type: ignore[arg-type]


@router.get("/buildings/{building_id}/profile", response_model=BuildingProfile)
def building_profile(ctx: Ctx, request: Request, who: Viewer, building_id: str,
                     days: Annotated[int, Query(ge=1, le=365)] = 30) -> BuildingProfile:
    """A building's digital risk profile: devices, open hazards and overdue rectifications, history, risk score.
    Its households as in ``GET /api/buildings/{id}``: by role, each read audited."""
    h, now = ctx.registry.hierarchy, ctx.clock_ms()
    detail = BuildingDetail.of(h, building_id)  # 404 for an unknown building
    b = h.building(building_id)
    kinds = bp.device_health(ctx.registry, now, building_id).get(building_id, {})
    recs = ctx.registry.list(now_ms=now, building_id=building_id, limit=10**9)
    covered = len({(r.floor, r.unit) for r in recs if r.kind == "smoke_detector" and r.unit})
    attention = [r for r in recs if health(r, now) - {Health.ONLINE}][:MAX_ATTENTION]
    active = _urgent_first([i for i in ctx.alerts.active() if i.location.building_id == building_id and not i.drill])
    rects = bp.rectifications(active, ctx.alerts, now)
    since = now - days * bp.DAY_MS
    past = bp.incidents_since(ctx.incidents, since, building_id)
    counts = bp.history_counts(past)
    risk = risk_score(bp.risk_inputs(h, building_id, kinds, active, rects, counts, covered))
    total = sum(k.registered for k in kinds.values())
    online = sum(k.online for k in kinds.values())
    return BuildingProfile(
        building=households_for(request, ctx, who, detail),
        risk=RiskPublic(score=risk.score, level=risk.level, level_zh=risk.level_zh,
                        factors=[FactorPublic(code=f.code, label_zh=f.label_zh, points=f.points, detail_zh=f.detail_zh)
                                 for f in risk.factors]),
        state=bp.building_state(sum(1 for i in active if i.severity is Severity.CRITICAL), len(active),
                                len(attention), total),
        coverage=CoveragePublic(units=b.floors * b.units_per_floor, covered_units=covered, devices=total, online=online,
                                online_rate=round(online / total, 4) if total else None),
        devices=[KindHealthPublic(kind=k, kind_label=KINDS[k].label_zh if k in KINDS else k, registered=v.registered,
                                  online=v.online, offline=v.offline, low_battery=v.low_battery, tampered=v.tampered,
                                  never_seen=v.never_seen)
                 for k, v in sorted(kinds.items(), key=lambda kv: list(KINDS).index(kv[0]) if kv[0] in KINDS else 99)],
        attention=[DevicePublic.of(r, ctx.registry.location(r), now) for r in attention],
        active=[IncidentPublic.of(i) for i in active],
        rectifications=[RectificationPublic(incident=IncidentPublic.of(r.incident), category_zh=r.category_zh,
                                            deadline_at=ms_to_dt(r.deadline_ms), overdue=r.overdue)  # type: ignore[arg-type]
                        for r in rects],
        history=_history(past, counts, days, since),
        at=ms_to_dt(now),  # type: ignore[arg-type]
    )


def _history(past: list[bp.PastIncident], counts: bp.HistoryCounts, days: int, since_ms: int) -> HistoryPublic:
    start = datetime.fromtimestamp(since_ms / 1000, tz=UTC).astimezone(SHANGHAI).date()
    by_day = {(start + timedelta(days=n)).isoformat(): {"alarms": 0, "false_alarms": 0, "charging": 0, "hazards": 0}
              for n in range(days + 1)}
    for p in past:
        day = by_day.get(datetime.fromtimestamp(p.opened_ms / 1000, tz=UTC).astimezone(SHANGHAI).date().isoformat())
        if day is None:
            continue
        day["alarms"] += p.is_fire_alarm
        day["false_alarms"] += p.is_fire_alarm and p.state == "false_alarm"
        day["charging"] += p.kind == "charging_station" and p.category in ("charging", "fire")
        day["hazards"] += p.category == "hazard"
    recent = [PastIncidentPublic(id=p.id, title=p.title, kind=p.kind, category=p.category, condition=p.condition,
                                 severity=p.severity, state=p.state, device_id=p.device_id,
                                 opened_at=ms_to_dt(p.opened_ms), acknowledged_at=ms_to_dt(p.acknowledged_ms),  # type: ignore[arg-type]
                                 closed_at=ms_to_dt(p.closed_ms))
              for p in reversed(past[-50:])]
    return HistoryPublic(days=days, alarms=counts.alarms, false_alarms=counts.false_alarms,
                         false_alarm_rate=round(counts.false_alarms / counts.alarms, 4) if counts.alarms else None,
                         charging_anomalies=counts.charging_anomalies, hazards=counts.hazards,
                         by_category=dict(counts.by_category), by_day=[{"day": d, **v} for d, v in by_day.items()],
                         recent=recent)


@router.get("/buildings/{building_id}/telemetry", response_model=BuildingTelemetry)
def building_telemetry(ctx: Ctx, building_id: str,
                       days: Annotated[int | None, Query(ge=1, le=3650)] = None) -> BuildingTelemetry:
    """Charts read back from the telemetry store: charging port temperatures, and the detectors lowest on battery.

    ``days``: the last N days instead of the newest readings; past two days (or the raw period) the charts read
    hourly aggregates, so a year's chart is 8,760 points a series, not half a million.
    """
    h, now = ctx.registry.hierarchy, ctx.clock_ms()
    if days is not None:
        return _telemetry_over_days(ctx, building_id, days, now)
    h.building(building_id)  # 404 for an unknown building
    store = ctx.telemetry
    recs = ctx.registry.list(now_ms=now, building_id=building_id, limit=10**9)
    detectors = [r for r in recs if r.kind == "smoke_detector"]
    if store is None:
        return BuildingTelemetry(available=False, store="", charging_temperature=[], detector_battery=[],
                                 detectors_total=len(detectors))
    temperature: list[SeriesPublic] = []
    for station in (r for r in recs if r.kind == "charging_station"):
        ports: dict[str, list[tuple[int, float]]] = {}
        for p in reversed(store.recent(station.device_id, STATION_POINTS)):
            port, value = p.fields.get("port"), p.fields.get("temperature_c")
            if port not in (None, "") and isinstance(value, int | float) and not isinstance(value, bool):
                ports.setdefault(str(port), []).append((p.ts_ms, float(value)))
        temperature += [SeriesPublic(device_id=station.device_id, label=f"{station.device_id} {port}号口",
                                     field="temperature_c", unit="°C", points=pts)
                        for port, pts in sorted(ports.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)]
    # The lowest first: the registry knows each detector's last battery reading without asking the store.
    lowest = sorted((r for r in detectors if r.battery_pct is not None), key=lambda r: (r.battery_pct, r.device_id))
    battery: list[SeriesPublic] = []
    for rec in lowest[:MAX_DETECTOR_SERIES]:
        pts = [(p.ts_ms, float(v)) for p in reversed(store.recent(rec.device_id, DETECTOR_POINTS))
               if isinstance(v := p.fields.get("battery_pct"), int | float) and not isinstance(v, bool)]
        if pts:
            where = f"{rec.floor}层 {rec.unit}" if rec.floor is not None else rec.unit
            battery.append(SeriesPublic(device_id=rec.device_id, label=f"{where} {rec.device_id}".strip(),
                                        field="battery_pct", unit="%", points=pts))
    return BuildingTelemetry(available=True, store=store.name, charging_temperature=temperature,
                             detector_battery=battery, detectors_total=len(detectors))


CHART_PORTS = [str(n) for n in range(1, 33)]  # ports a station may report (the registry does not list them)


def _telemetry_over_days(ctx: Ctx, building_id: str, days: int, now: int) -> BuildingTelemetry:
    ctx.registry.hierarchy.building(building_id)  # 404 for an unknown building
    recs = ctx.registry.list(now_ms=now, building_id=building_id, limit=10**9)
    detectors = [r for r in recs if r.kind == "smoke_detector"]
    history = ctx.history
    if history is None:
        return BuildingTelemetry(available=False, store="", charging_temperature=[], detector_battery=[],
                                 detectors_total=len(detectors))
    start = now - days * bp.DAY_MS
    resolution = chart_resolution(start, now, now, history.policy)
    temperature: list[SeriesPublic] = []
    for station in (r for r in recs if r.kind == "charging_station"):
        for port in CHART_PORTS:
            _res, pts = history.series(station.device_id, "temperature_c", start, now, now, port)
            if pts:
                temperature.append(SeriesPublic(device_id=station.device_id, label=f"{station.device_id} {port}号口",
                                                field="temperature_c", unit="°C", points=pts))
    lowest = sorted((r for r in detectors if r.battery_pct is not None), key=lambda r: (r.battery_pct, r.device_id))
    battery: list[SeriesPublic] = []
    for rec in lowest[:MAX_DETECTOR_SERIES]:
        _res, pts = history.series(rec.device_id, "battery_pct", start, now, now)
        if pts:
            where = f"{rec.floor}层 {rec.unit}" if rec.floor is not None else rec.unit
            battery.append(SeriesPublic(device_id=rec.device_id, label=f"{where} {rec.device_id}".strip(),
                                        field="battery_pct", unit="%", points=pts))
    store = ctx.telemetry.name if ctx.telemetry is not None else ""
    return BuildingTelemetry(available=True, store=store, charging_temperature=temperature, detector_battery=battery,
                             detectors_total=len(detectors), resolution=resolution)
