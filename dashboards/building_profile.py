"""Read models for the map, the building risk profile and the KPI panel.

Counts come from three places, read only: the registry (devices and their health, in
memory), the alert service (active incidents, in memory) and the incident tables (history,
one SQL query per request through the incident store's connection). The weighing is
``dashboards/risk.py``; this module only counts. Nothing here writes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, case, func, or_, select

from alerts.incidents import Incident, Severity, State
from alerts.service import AlertService
from alerts.store import IncidentStore, incident_audit_table, incidents_table
from dashboards.risk import RiskInputs
from devices.catalog import KINDS
from devices.drill import DRILL_PREFIX, is_drill
from devices.hierarchy import Hierarchy
from devices.kinds.inspection_report.rules import CATEGORY_ZH, DEADLINE_H
from devices.registry import (
    LOW_BATTERY_PCT,
    SILENT_INTERVALS,
    DeviceRegistry,
    Health,
    Lifecycle,
    devices_table,
    health,
)
from foundation.errors import Invalid

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
HAZARD_KIND = "inspection_report"
# A device's own fire alarm; a suspected fire (a building's group incident) gathers those alarms, and
# counting it too would count one fire twice.
FIRE_ALARM_CONDITIONS = ("smoke_alarm", "shed_smoke")


# -- devices ------------------------------------------------------------------------------------


@dataclass
class KindHealth:
    registered: int = 0
    online: int = 0
    offline: int = 0
    low_battery: int = 0
    tampered: int = 0
    never_seen: int = 0

    def add(self, flags: Iterable[Health]) -> None:
        self.registered += 1
        for f in flags:
            setattr(self, f.value, getattr(self, f.value) + 1)

    @property
    def faulty(self) -> int:
        return self.offline + self.low_battery + self.tampered + self.never_seen


def device_health(registry: DeviceRegistry, now_ms: int, building_id: str = "") -> dict[str, dict[str, KindHealth]]:
    """building id → device kind → counts per health flag, over active devices."""
    out: dict[str, dict[str, KindHealth]] = defaultdict(lambda: defaultdict(KindHealth))
    for rec in registry.list(now_ms=now_ms, building_id=building_id, limit=10**9):
        if not is_drill(rec.device_id):  # a drill's devices are not the building's (devices/drill.py)
            out[rec.building_id][rec.kind].add(health(rec, now_ms))
    return out


def devices_by_building(store: IncidentStore, now_ms: int) -> tuple[Counter[str], Counter[str]]:
    """building id → active devices, and how many of them show any fault (offline, low, tampered, never seen).

    For the whole street at once (the map), in one SQL aggregate over the devices table, the same
    flags as ``devices.registry.health`` written as SQL: asking the registry device by device costs
    a second of CPU at 50,000 devices. The table lags the registry's memory by at most its state
    flush interval (ingest writes health every 10 s); the building profile reads the registry itself.
    """
    d = devices_table
    silent = [(d.c.kind == name, now_ms - d.c.last_seen_ms > SILENT_INTERVALS * kind.heartbeat_s * 1000)
              for name, kind in KINDS.items() if kind.heartbeat_s is not None]
    offline = and_(d.c.last_seen_ms.is_not(None), or_(d.c.connected.is_(False), case(*silent, else_=False)))
    faulty = or_(d.c.last_seen_ms.is_(None), offline, d.c.battery_pct < LOW_BATTERY_PCT, d.c.tampered.is_(True))
    q = (select(d.c.building_id, func.count(), func.sum(case((faulty, 1), else_=0)))
         .where(d.c.lifecycle == Lifecycle.ACTIVE.value).group_by(d.c.building_id))
    with store.transaction() as conn:
        rows = conn.execute(q).all()
    return Counter({b: int(n) for b, n, _ in rows}), Counter({b: int(f or 0) for b, _, f in rows})


# -- incidents ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PastIncident:
    """An incident as history sees it: enough for counts, rates and response times."""

    id: str
    building_id: str
    device_id: str
    kind: str
    condition: str
    category: str
    severity: str
    state: str
    title: str
    opened_ms: int
    acknowledged_ms: int | None
    closed_ms: int | None

    @property
    def is_fire_alarm(self) -> bool:
        return self.category == "fire" and self.condition in FIRE_ALARM_CONDITIONS


def incidents_since(store: IncidentStore, since_ms: int, building_id: str = "",
                    include_drill: bool = False) -> list[PastIncident]:
    """Every incident opened since ``since_ms`` (active or not), oldest first; a drill's only if asked."""
    t = incidents_table
    q = select(t.c.id, t.c.building_id, t.c.device_id, t.c.kind, t.c.condition, t.c.category, t.c.severity, t.c.state,
               t.c.title, t.c.opened_ms, t.c.acknowledged_ms, t.c.closed_ms).where(t.c.opened_ms >= since_ms)
    if not include_drill:  # a drill's incidents are no building's history: KPIs and risk profiles leave them out
        q = q.where(~func.upper(t.c.device_id).like(f"{DRILL_PREFIX}%"))
    if building_id:
        q = q.where(t.c.building_id == building_id)
    with store.transaction() as conn:
        rows = conn.execute(q.order_by(t.c.opened_ms, t.c.id)).all()
    return [PastIncident(*r) for r in rows]


def first_arrivals(store: IncidentStore, since_ms: int) -> dict[str, int]:
    """incident id → when someone first reached the scene (the audit's first ``arrive``), since ``since_ms``."""
    a = incident_audit_table
    q = (select(a.c.incident_id, func.min(a.c.at_ms)).where(a.c.action == "arrive", a.c.at_ms >= since_ms)
         .group_by(a.c.incident_id))
    with store.transaction() as conn:
        return {incident_id: int(at) for incident_id, at in conn.execute(q).all()}


def hazard_category(incident: Incident) -> str | None:
    """The hazard category of a rectification task (a 随手拍 report), else None."""
    if incident.kind == HAZARD_KIND and incident.condition.startswith("hazard:"):
        return incident.condition.removeprefix("hazard:")
    return None


def rectification_deadline_ms(incident: Incident, alerts: AlertService) -> int | None:
    """When the hazard must have been put right: the report's time plus its category's deadline (as the rule wrote it)."""
    category = hazard_category(incident)
    if category is None:
        return None
    try:
        hours = alerts.ctx.threshold(HAZARD_KIND, f"deadline_h_{category}", incident.device_id)
    except Invalid:  # rules without this threshold (a custom rule set): the rule's own default
        hours = DEADLINE_H.get(category, DEADLINE_H["other"])
    return min(incident.first_event_ms, incident.opened_ms) + int(hours * HOUR_MS)


@dataclass(frozen=True, slots=True)
class Rectification:
    incident: Incident
    category_zh: str
    deadline_ms: int
    overdue: bool


def rectifications(active: Sequence[Incident], alerts: AlertService, now_ms: int) -> list[Rectification]:
    """Open hazard reports with their deadlines, most overdue first."""
    out = []
    for inc in active:
        deadline = rectification_deadline_ms(inc, alerts)
        if deadline is not None:
            category = hazard_category(inc) or "other"
            out.append(Rectification(inc, CATEGORY_ZH.get(category, category), deadline, now_ms > deadline))
    return sorted(out, key=lambda r: (r.deadline_ms, r.incident.id))


# -- the map ------------------------------------------------------------------------------------


def building_state(critical: int, active: int, faults: int, devices: int) -> str:
    """The colour of a building on the map: critical > incidents > device faults > normal (no devices: its own)."""
    if critical:
        return "critical"
    if active:
        return "incident"
    if faults:
        return "fault"
    return "normal" if devices else "no_devices"


# -- the profile --------------------------------------------------------------------------------


@dataclass
class HistoryCounts:
    """A building's incidents in a window, counted."""

    alarms: int = 0
    false_alarms: int = 0
    charging_anomalies: int = 0
    hazards: int = 0
    by_category: Counter[str] = field(default_factory=Counter)


def history_counts(past: Iterable[PastIncident]) -> HistoryCounts:
    h = HistoryCounts()
    for p in past:
        h.by_category[p.category] += 1
        if p.is_fire_alarm:
            h.alarms += 1
            h.false_alarms += p.state == State.FALSE_ALARM.value
        if p.kind == "charging_station" and p.category in ("charging", "fire"):
            h.charging_anomalies += 1
        if p.category == "hazard":
            h.hazards += 1
    return h


def risk_inputs(hierarchy: Hierarchy, building_id: str, kinds: dict[str, KindHealth], active: Sequence[Incident],
                rects: Sequence[Rectification], history: HistoryCounts, covered_units: int) -> RiskInputs:
    b = hierarchy.building(building_id)
    total = KindHealth()
    for k in kinds.values():
        for name in ("registered", "online", "offline", "low_battery", "tampered", "never_seen"):
            setattr(total, name, getattr(total, name) + getattr(k, name))
    hazard_ids = {r.incident.id for r in rects}
    critical = sum(1 for i in active if i.severity is Severity.CRITICAL)
    return RiskInputs(
        units=b.floors * b.units_per_floor, high_rise=b.high_rise,
        elderly_alone=sum(1 for (bid, _u) in hierarchy.households if bid == building_id),
        devices=total.registered,
        covered_units=covered_units,
        offline=total.offline, never_seen=total.never_seen, low_battery=total.low_battery, tampered=total.tampered,
        open_critical=critical,
        open_other=sum(1 for i in active if i.severity is not Severity.CRITICAL and i.id not in hazard_ids),
        open_hazards=sum(1 for r in rects if not r.overdue), overdue_rectifications=sum(1 for r in rects if r.overdue),
        alarms=history.alarms, false_alarms=history.false_alarms, charging_anomalies=history.charging_anomalies,
    )
