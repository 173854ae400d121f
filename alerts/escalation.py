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
from alerts.policies import Policy, PolicySet, Step, load_default
from devices.drill import DRILL_ZH, drill_id, is_drill
from devices.hierarchy import Hierarchy, Responder, Tier
from devices.topics import dispatch_topic

__all__ = ["DEFAULT_POLICIES", "POLICIES", "Notice", "Policy", "PolicySet", "Step", "advance", "due", "notices_for",
           "policy_for", "rescale", "start"]

# The policies are data (alerts/policies.py): the shipped file ``alerts/policies.json`` until an administrator
# stores another version; the service passes the version in force to ``start``/``advance``/``rescale``.
DEFAULT_POLICIES: PolicySet = load_default()
POLICIES: dict[tuple[str, Severity], Policy] = {key: DEFAULT_POLICIES.policies[name]
                                                for key, name in DEFAULT_POLICIES.routes.items()}


def policy_for(category: str, severity: Severity, condition: str = "", policies: PolicySet | None = None) -> Policy:
    """The policy for a category at a severity; lower severities of a category share its HIGH policy."""
    return (policies or DEFAULT_POLICIES).policy_for(category, severity, condition)


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


def notices_for(incident: Incident, step_no: int, policy: Policy, hierarchy: Hierarchy, now_ms: int) -> list[Notice]:
    step = policy.step(step_no)
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


def start(incident: Incident, hierarchy: Hierarchy, now_ms: int,
          policies: PolicySet | None = None) -> tuple[Incident, list[Notice], AuditEntry]:
    """A new incident: the policy's first step, its notices, and its deadline."""
    policy = policy_for(incident.category, incident.severity, incident.condition, policies)
    return _at_step(incident, policy, 0, hierarchy, now_ms, "notify")


def due(incident: Incident, now_ms: int) -> bool:
    """Nobody acknowledged it and its step's deadline has passed."""
    return incident.state is State.OPEN and incident.next_deadline_ms is not None and now_ms >= incident.next_deadline_ms


def advance(incident: Incident, hierarchy: Hierarchy, now_ms: int,
            policies: PolicySet | None = None) -> tuple[Incident, list[Notice], AuditEntry]:
    """The deadline passed unacknowledged: the next step; past the last, the last again (``repeat_last`` times,
    or until someone answers). Repeats used up: no notices, no deadline any more (the trail says so)."""
    policy = policy_for(incident.category, incident.severity, incident.condition, policies)
    if not policy.repeats_left(incident.escalation_step):
        updated = replace(incident, next_deadline_ms=None, updated_ms=now_ms)
        entry = AuditEntry(incident.id, now_ms, "system", "escalate", incident.state, incident.state,
                           f"{policy.name} 最高级已重复 {policy.repeat_last} 次，不再通知（no repeats left）")
        return updated, [], entry
    return _at_step(incident, policy, incident.escalation_step + 1, hierarchy, now_ms, "escalate")


def rescale(incident: Incident, hierarchy: Hierarchy, now_ms: int,
            policies: PolicySet | None = None) -> tuple[Incident, list[Notice], AuditEntry] | None:
    """Severity rose (a single alarm became a suspected fire): restart at the new policy's first step if it reaches higher."""
    policy = policy_for(incident.category, incident.severity, incident.condition, policies)
    if incident.state is not State.OPEN or policy.name == incident.escalation_policy:
        return None
    return _at_step(incident, policy, 0, hierarchy, now_ms, "notify")


def rebase(incident: Incident, old: PolicySet, new: PolicySet, now_ms: int) -> tuple[Incident, AuditEntry] | None:
    """A new policy version was applied: an open incident's running deadline follows it at once.

    The step it is on started at ``deadline − old step's ack_within_s``; its deadline becomes that start plus the
    new version's ack_within_s for the same step of its (new) policy (already past: the next tick escalates it).
    Nobody is told again now. Acknowledged and closed incidents, and those with no deadline, are left as they are.
    """
    if incident.state is not State.OPEN or incident.next_deadline_ms is None:
        return None
    was = old.policies.get(incident.escalation_policy)
    if was is None:  # a policy the version in force does not know: when its step began cannot be told
        return None
    policy = new.policy_for(incident.category, incident.severity, incident.condition)
    step = policy.step(incident.escalation_step)
    started = incident.next_deadline_ms - was.step(incident.escalation_step).ack_within_s * 1000
    deadline = started + step.ack_within_s * 1000
    if deadline == incident.next_deadline_ms and policy.name == incident.escalation_policy:
        return None
    updated = replace(incident, escalation_policy=policy.name, next_deadline_ms=deadline, updated_ms=now_ms)
    shown = min(incident.escalation_step, len(policy.steps) - 1) + 1
    entry = AuditEntry(incident.id, now_ms, "system", "policy", incident.state, incident.state,
                       f"升级策略第 {new.version} 版生效：{policy.name} 第{shown}级确认时限改为 {_minutes(step.ack_within_s)}"
                       f"（escalation policy v{new.version} applied）")
    return updated, entry


def _minutes(seconds: int) -> str:
    return f"{seconds // 60} 分钟" if seconds % 60 == 0 else f"{seconds} 秒"


def _at_step(incident: Incident, policy: Policy, step_no: int, hierarchy: Hierarchy, now_ms: int,
             action: str) -> tuple[Incident, list[Notice], AuditEntry]:
    step = policy.step(step_no)
    updated = replace(incident, escalation_policy=policy.name, escalation_step=step_no,
                      tier=max(step.tiers).name.lower(), next_deadline_ms=now_ms + step.ack_within_s * 1000,
                      updated_ms=now_ms)
    # A repeat of the last step carries the last step's number: its notices go again (MQTT, the wall), but the
    # attempts on people's phones are keyed by step and are not made twice (docs/incidents.md "Never twice").
    notices = notices_for(updated, min(step_no, len(policy.steps) - 1), policy, hierarchy, now_ms)
    told = "、".join(sorted({f"{n.name}" for n in notices})) or "（无登记的责任人）"
    if step_no + 1 < len(policy.steps):
        note = f"{policy.name} 第{step_no + 1}级：通知 {told}；{_minutes(step.ack_within_s)}内未确认则上报"
    elif step_no + 1 == len(policy.steps):
        note = f"{policy.name} 最高级：通知 {told}"
    else:
        note = f"{policy.name} 最高级（第 {step_no + 1 - len(policy.steps)} 次重复）：通知 {told}"
    entry = AuditEntry(incident.id, now_ms, "system", action, incident.state, incident.state, note)
    return updated, notices, entry
