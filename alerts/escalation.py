"""Tiered escalation (分级吹哨), as pure functions over incidents, policies and the hierarchy.

A policy is a list of steps. Each step tells some tiers of the incident's chain (building →
community → area → street → district), optionally only some roles there, and may dispatch
the nearest covering micro fire station; if nobody acknowledges within the step's
deadline, the next step tells the next tiers. What the lowest level cannot handle in time
goes up one level; the most serious starts at the top (a suspected fire tells the street's
operations centre at once). Acknowledging (or dispatching) stops the climb.

The step and its deadline are kept on the incident, in the database: an incident whose
deadline passed while the service was down escalates on the first tick after it is back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from alerts.incidents import AuditEntry, Incident, Severity, State
from devices.drill import DRILL_TOPIC_ROOT, DRILL_ZH, drill_id, is_drill
from devices.hierarchy import Hierarchy, Responder, Tier

MINUTE = 60


@dataclass(frozen=True, slots=True)
class Step:
    tiers: tuple[Tier, ...]
    ack_within_s: int
    roles: tuple[str, ...] = ()  # empty: every responder at those tiers
    fire_station: bool = False  # dispatch the nearest covering micro fire station too
    household: bool = False  # the household's family and doctor (one-touch alarms)


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    steps: tuple[Step, ...]


B, C, A, S, D = Tier.BUILDING, Tier.COMMUNITY, Tier.AREA, Tier.STREET, Tier.DISTRICT

POLICIES: dict[tuple[str, Severity], Policy] = {
    # A suspected fire, smoke in a charging shed: the street's ops centre at once, the station dispatched.
    ("fire", Severity.CRITICAL): Policy("fire-critical", (
        Step((B, C, S), 1 * MINUTE, fire_station=True),
        Step((A, D), 2 * MINUTE),
    )),
    # One detector sounding: the building's people and the station first, then up a tier a step.
    ("fire", Severity.HIGH): Policy("fire", (
        # the property company hangs on the community, the building-group leader on the building
        Step((B, C), 1 * MINUTE, roles=("property", "building_leader"), fire_station=True),
        Step((C,), 2 * MINUTE, roles=("residents_committee", "community_police")),
        Step((A,), 3 * MINUTE),
        Step((S,), 5 * MINUTE),
        Step((D,), 10 * MINUTE),
    )),
    ("welfare", Severity.CRITICAL): Policy("welfare-critical", (
        Step((B, C), 1 * MINUTE, roles=("building_leader", "residents_committee", "property"), household=True),
        Step((S,), 2 * MINUTE),
        Step((D,), 5 * MINUTE, roles=("district_ops",)),
    )),
    ("welfare", Severity.HIGH): Policy("welfare", (
        Step((C,), 30 * MINUTE, roles=("residents_committee",), household=True),
        Step((A,), 60 * MINUTE),
        Step((S,), 2 * 60 * MINUTE),
    )),
    ("charging", Severity.HIGH): Policy("charging", (
        Step((B, C), 5 * MINUTE, roles=("property", "building_leader")),
        Step((A,), 15 * MINUTE),
        Step((S,), 30 * MINUTE),
    )),
    ("hazard", Severity.HIGH): Policy("hazard", (
        Step((C,), 4 * 60 * MINUTE, roles=("property", "residents_committee")),
        Step((A,), 24 * 60 * MINUTE),
        Step((S,), 48 * 60 * MINUTE),
    )),
    ("readiness", Severity.HIGH): Policy("readiness", (
        Step((C,), 30 * MINUTE),
        Step((S,), 60 * MINUTE),
    )),
    # A fault of the service itself (alerts/system_faults.py): the ops centre's technical duty, then its
    # shift leader; an alarm path impaired (critical) tells both at once and the district soon after.
    ("system", Severity.CRITICAL): Policy("system-critical", (
        Step((S,), 5 * MINUTE, roles=("tech_duty", "street_ops")),
        Step((D,), 10 * MINUTE, roles=("district_ops",)),
    )),
    ("system", Severity.HIGH): Policy("system", (
        Step((S,), 10 * MINUTE, roles=("tech_duty",)),
        Step((S,), 20 * MINUTE, roles=("tech_duty", "street_ops")),
        Step((D,), 30 * MINUTE, roles=("district_ops",)),
    )),
}
# A responder who did not answer in time (a micro fire station late to acknowledge or to
# arrive): the people who chase responders, never another dispatch of the same station.
_RESPONSE_BREACH = Policy("response-breach", (
    Step((C, S), 2 * MINUTE),
    Step((A, D), 5 * MINUTE),
))
_MAINTENANCE = Policy("maintenance", (
    Step((C,), 24 * 60 * MINUTE, roles=("property",)),
    Step((A,), 48 * 60 * MINUTE),
    Step((S,), 72 * 60 * MINUTE),
))


def policy_for(category: str, severity: Severity, condition: str = "") -> Policy:
    """The policy for a category at a severity; lower severities of a category share its HIGH policy."""
    if condition.startswith("dispatch_"):
        return _RESPONSE_BREACH
    for sev in (severity, Severity.HIGH):
        if (category, sev) in POLICIES:
            return POLICIES[(category, sev)]
    if severity is Severity.CRITICAL:
        return POLICIES[("fire", Severity.CRITICAL)] if category == "fire" else POLICIES[("welfare", Severity.CRITICAL)]
    return _MAINTENANCE


@dataclass(frozen=True, slots=True)
class Notice:
    """One message to one recipient: what the dispatcher sends (over MQTT, and to the webhook)."""

    incident_id: str
    step: int
    tier: str
    place_id: str
    role: str
    name: str
    phone: str
    topic: str
    payload: str  # JSON
    dispatch_id: str = ""  # set when a micro fire station is dispatched
    drill: bool = False  # a drill's notice: people are reached only through the drill's test contacts


def dispatch_topic(street: str, tier: str, place_id: str, role: str, drill: bool = False) -> str:
    """``dispatch/v1/{street}/{tier}/{place}/{role}``: outside ``safety/`` so ingest never reads its own notices.

    A drill's notice goes to ``drill/v1/…`` instead: no real terminal, duty phone app or group reads it
    (devices/drill.py); the drill's simulated stations read theirs there."""
    return f"{DRILL_TOPIC_ROOT if drill else 'dispatch/v1'}/{street}/{tier}/{place_id}/{role}"


def notices_for(incident: Incident, step_no: int, policy: Policy, hierarchy: Hierarchy, now_ms: int) -> list[Notice]:
    step = policy.steps[step_no]
    loc = incident.location
    chain = hierarchy.chain(loc.building_id)
    recipients: list[tuple[str, str, Responder]] = []
    for tc in chain:
        if tc.tier in step.tiers:
            recipients += [(tc.tier.name.lower(), tc.place_id, r) for r in tc.responders
                           if not step.roles or r.role in step.roles]
    if step.household and loc.building_id and loc.unit:
        home = hierarchy.household(loc.building_id, loc.unit)
        if home is not None:
            recipients += [("household", f"{loc.building_id}-{loc.unit}", c) for c in home.contacts]
    out = [_notice(incident, step_no, tier, place, r, now_ms) for tier, place, r in recipients]
    if step.fire_station and loc.building_id:
        station = hierarchy.nearest_station(loc.building_id)
        if station is not None:
            dispatch_id = f"{incident.id}-{step_no}"
            if incident.drill:  # the station's drill twin, answered by the drill's simulated station: no real phone
                duty = Responder("fire_station_duty", f"{station.name}（{DRILL_ZH}）", "")
                out.append(_notice(incident, step_no, "fire_station", drill_id(station.id), duty, now_ms, dispatch_id))
            else:
                duty = Responder("fire_station_duty", station.name,
                                 station.responders[0].phone if station.responders else "")
                out.append(_notice(incident, step_no, "fire_station", station.id, duty, now_ms, dispatch_id))
    return out


def _notice(incident: Incident, step_no: int, tier: str, place_id: str, who: Responder, now_ms: int,
            dispatch_id: str = "") -> Notice:
    loc = incident.location
    body = {
        "v": 1, "ts": now_ms, "incident_id": incident.id, "dispatch_id": dispatch_id or None, "step": step_no,
        "severity": incident.severity.value, "category": incident.category, "title": incident.title,
        "detail": incident.detail, "location": loc.label(), "building_id": loc.building_id,
        "device_id": incident.device_id, "opened_ms": incident.opened_ms, "role": who.role, "to": who.name,
        "acknowledge": f"/api/incidents/{incident.id}/actions",
    }
    if incident.drill:
        body["drill"] = True
        body["title"] = f"【{DRILL_ZH}】{incident.title}"
    role = who.role if tier != "fire_station" else "duty"
    topic = dispatch_topic(loc.street_id, tier, place_id, role, incident.drill)
    phone = "" if incident.drill else who.phone  # a drill's notice carries no real number to ring
    return Notice(incident.id, step_no, tier, place_id, who.role, who.name, phone, topic,
                  json.dumps(body, ensure_ascii=False, separators=(",", ":")), dispatch_id, drill=incident.drill)


STAND_DOWN_ROLE = "fire_station_stand_down"  # a cancel notice: its own row beside the dispatch it calls off


def stand_down_notices(incident: Incident, dispatch_id: str, station_id: str, hierarchy: Hierarchy,
                       now_ms: int) -> list[Notice]:
    """The incident ended (false alarm, closed) while a micro fire station was dispatched to it: tell the
    station, on its duty topic (and the webhook, as every notice), that the dispatch is cancelled."""
    station = hierarchy.fire_stations.get(station_id)
    name = station.name if station else station_id
    phone = station.responders[0].phone if station and station.responders else ""
    why = "误报" if incident.state is State.FALSE_ALARM else "已结案" if incident.state is State.CLOSED else "已结束"
    body = {
        "v": 1, "ts": now_ms, "type": "dispatch_cancel", "incident_id": incident.id, "dispatch_id": dispatch_id,
        "state": incident.state.value, "reason": f"警情{why}，撤销派单，请收队", "title": incident.title,
        "location": incident.location.label(), "building_id": incident.location.building_id, "to": name,
    }
    step = int(dispatch_id.rsplit("-", 1)[1]) if dispatch_id.rsplit("-", 1)[-1].isdigit() else 0
    drill = incident.drill or is_drill(station_id)
    if drill:
        body["drill"], phone = True, ""
    topic = dispatch_topic(incident.location.street_id, "fire_station", station_id, "duty", drill)
    return [Notice(incident.id, step, "fire_station", station_id, STAND_DOWN_ROLE, name, phone, topic,
                   json.dumps(body, ensure_ascii=False, separators=(",", ":")), drill=drill)]


def start(incident: Incident, hierarchy: Hierarchy, now_ms: int) -> tuple[Incident, list[Notice], AuditEntry]:
    """A new incident: the policy's first step, its notices, and its deadline."""
    policy = policy_for(incident.category, incident.severity, incident.condition)
    return _at_step(incident, policy, 0, hierarchy, now_ms, "notify")


def due(incident: Incident, now_ms: int) -> bool:
    """Nobody acknowledged it and its step's deadline has passed."""
    return incident.state is State.OPEN and incident.next_deadline_ms is not None and now_ms >= incident.next_deadline_ms


def advance(incident: Incident, hierarchy: Hierarchy, now_ms: int) -> tuple[Incident, list[Notice], AuditEntry]:
    """The deadline passed unacknowledged: the next step (the last step's deadline only repeats it)."""
    policy = policy_for(incident.category, incident.severity, incident.condition)
    step_no = min(incident.escalation_step + 1, len(policy.steps) - 1)
    return _at_step(incident, policy, step_no, hierarchy, now_ms, "escalate")


def rescale(incident: Incident, hierarchy: Hierarchy, now_ms: int) -> tuple[Incident, list[Notice], AuditEntry] | None:
    """Severity rose (a single alarm became a suspected fire): restart at the new policy's first step if it reaches higher."""
    policy = policy_for(incident.category, incident.severity, incident.condition)
    if incident.state is not State.OPEN or policy.name == incident.escalation_policy:
        return None
    return _at_step(incident, policy, 0, hierarchy, now_ms, "notify")


def _at_step(incident: Incident, policy: Policy, step_no: int, hierarchy: Hierarchy, now_ms: int,
             action: str) -> tuple[Incident, list[Notice], AuditEntry]:
    step = policy.steps[step_no]
    updated = replace(incident, escalation_policy=policy.name, escalation_step=step_no,
                      tier=max(step.tiers).name.lower(), next_deadline_ms=now_ms + step.ack_within_s * 1000,
                      updated_ms=now_ms)
    notices = notices_for(updated, step_no, policy, hierarchy, now_ms)
    told = "、".join(sorted({f"{n.name}" for n in notices})) or "（无登记的责任人）"
    note = (f"{policy.name} 第{step_no + 1}级：通知 {told}；{step.ack_within_s // 60} 分钟内未确认则上报"
            if step_no + 1 < len(policy.steps) else f"{policy.name} 最高级：通知 {told}")
    entry = AuditEntry(incident.id, now_ms, "system", action, incident.state, incident.state, note)
    return updated, notices, entry
