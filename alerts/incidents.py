"""Incidents and their closed-loop lifecycle, as pure functions over plain data.

    open ─ acknowledge ─▶ acknowledged ─ dispatch ─▶ dispatched ─ arrive ─▶ on_scene
      │                        │                          │                    │
      └──────── dispatch ──────┘            resolve ◀─────┴────────────────────┘
                                               ▼
                                            resolved ─ verify ─▶ closed
    any active state ─ false_alarm ─▶ false_alarm      open/acknowledged ─ merge ─▶ merged

A group incident (a suspected fire in a building: ``scope`` set, ``members`` its devices) carries
its members' own incidents with it: when a person resolves, verifies (closes) or marks the group
false, every member incident still active follows it to the same state (``follow_group``), its
escalation stops and its trail names the group and the person. A member can be split out of the
group (``split_member``) to be handled on its own; an incident can be merged into a group
(``merge_into``), which then carries it.

发现 → 上报 → 派单 → 处置 → 核查 → 结案: a rule discovers and reports (open), an operator
dispatches, responders handle (on scene, resolved), a person verifies and closes. Every
change is an ``AuditEntry``: who, when, from which state to which, and a note.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from devices.catalog import KINDS
from devices.drill import is_drill
from devices.hierarchy import Location
from foundation.errors import IllegalTransition, Invalid


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.CRITICAL: 3, Severity.HIGH: 2, Severity.WARNING: 1, Severity.INFO: 0}


class State(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    ON_SCENE = "on_scene"
    RESOLVED = "resolved"
    CLOSED = "closed"
    FALSE_ALARM = "false_alarm"
    MERGED = "merged"

    @property
    def is_active(self) -> bool:
        return self not in (State.CLOSED, State.FALSE_ALARM, State.MERGED)


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    DISPATCH = "dispatch"
    ARRIVE = "arrive"
    RESOLVE = "resolve"
    VERIFY = "verify"
    FALSE_ALARM = "false_alarm"
    MERGE = "merge"
    NOTE = "note"
    SILENCE = "silence"  # an operator stopped the wall's tone for this incident; it stays open and escalates


_ACTIVE_BEFORE_RESOLVED = (State.OPEN, State.ACKNOWLEDGED, State.DISPATCHED, State.ON_SCENE)
TRANSITIONS: dict[Action, tuple[tuple[State, ...], State | None]] = {
    Action.ACKNOWLEDGE: ((State.OPEN,), State.ACKNOWLEDGED),
    Action.DISPATCH: ((State.OPEN, State.ACKNOWLEDGED), State.DISPATCHED),
    Action.ARRIVE: ((State.DISPATCHED,), State.ON_SCENE),
    Action.RESOLVE: ((State.ACKNOWLEDGED, State.DISPATCHED, State.ON_SCENE), State.RESOLVED),
    Action.VERIFY: ((State.RESOLVED,), State.CLOSED),
    Action.FALSE_ALARM: (_ACTIVE_BEFORE_RESOLVED + (State.RESOLVED,), State.FALSE_ALARM),
    Action.MERGE: ((State.OPEN, State.ACKNOWLEDGED), State.MERGED),
    Action.NOTE: (tuple(State), None),  # a note changes nothing but the trail
    Action.SILENCE: ((State.OPEN,), None),  # nor does silencing the tone: only the trail says who did
}


@dataclass(frozen=True, slots=True)
class Signal:
    """What a rule says: this device is in this condition now. The engine turns it into an incident."""

    device_id: str
    kind: str
    condition: str  # stable code, part of the dedup key: smoke_alarm, low_battery, ...
    category: str  # fire, maintenance, welfare, hazard, charging
    severity: Severity
    title: str  # for people, in Chinese
    at_ms: int  # the device's time of the message that raised it
    detail: str = ""  # why, for people
    # A signal about more than one device (a suspected fire in a building, a thousand
    # detectors offline at once) names its scope, e.g. "building:xq-01" or "street:wanli",
    # and the devices it concerns; one incident per scope and condition.
    scope: str = ""
    members: tuple[str, ...] = ()
    # A rule may lower an active incident's severity only by saying so (an elderly person's
    # press cancelled within the grace period): the record stays, the trail says why.
    downgrade: bool = False
    # News about an incident that may already be closed (devices of a storm back online):
    # it updates the active incident with this key, and never opens one.
    update_only: bool = False
    # What hygiene let through but flagged on the message that raised it ("设备时钟落后 8.0 天"):
    # the incident carries it, so whoever acts knows what to doubt (ingest/hygiene.py).
    flags: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        # A drill's group (DRILL-… devices) never shares a key with the real group of the same place:
        # a drill's suspected fire in xq-01 and a real one there are two incidents (devices/drill.py).
        if self.scope and is_drill(self.device_id):
            return f"drill|{self.scope}:{self.condition}"
        return f"{self.scope or self.device_id}:{self.condition}"


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    key: str
    device_id: str
    kind: str
    condition: str
    category: str
    severity: Severity
    state: State
    title: str
    detail: str
    location: Location
    opened_ms: int  # when the system opened it (server clock)
    first_event_ms: int  # the device's time of the first message
    last_event_ms: int
    updated_ms: int
    event_count: int = 1
    acknowledged_ms: int | None = None
    acknowledged_by: str = ""
    closed_ms: int | None = None
    scope: str = ""  # "" for one device; "building:xq-01", "street:wanli" for a group
    members: tuple[str, ...] = ()  # the devices a group incident gathers
    # Escalation (alerts/escalation.py): the policy, its current step and the tier it reached,
    # and when the step's acknowledgement deadline passes (None once acknowledged).
    escalation_policy: str = ""
    escalation_step: int = 0
    tier: str = ""
    next_deadline_ms: int | None = None
    flags: tuple[str, ...] = ()  # data-quality flags of the messages it gathered (Signal.flags), each once
    # The stored row's version (0: never stored). A write names the version it changed, so that two
    # instances of the service never overwrite each other's change (alerts/store.py, StaleIncident).
    version: int = 0

    @property
    def drill(self) -> bool:
        """Raised by a drill's devices (``DRILL-…``): marked 演练, left out of KPIs, notices to drill contacts only."""
        return is_drill(self.device_id)

    @property
    def subject(self) -> str:
        """What it is about, for people: the device, or a group's place and how many devices it gathers.

        A group incident's ``device_id`` is only the device that raised it first; this says what it is
        (楼栋 xq-01：2 个烟感探测器, 街道 wanli：1000 个烟感探测器).
        """
        if not self.scope:
            return self.device_id
        what, _, where = self.scope.partition(":")
        kind = KINDS[self.kind].label_zh if self.kind in KINDS else "设备"
        more = "以上" if len(self.members) >= MAX_MEMBERS else ""
        return f"{_SCOPE_ZH.get(what, what)} {where}：{len(self.members)} 个{more}{kind}"


_SCOPE_ZH = {"building": "楼栋", "community": "居民区", "area": "片区", "street": "街道"}
MAX_MEMBERS = 2000  # a storm incident names its devices up to here; its count goes on


@dataclass(frozen=True, slots=True)
class AuditEntry:
    incident_id: str
    at_ms: int
    actor: str
    action: str
    from_state: State | None
    to_state: State
    note: str = ""


def new_incident_id() -> str:
    return "inc_" + secrets.token_hex(6)


def open_or_update(current: Incident | None, signal: Signal, location: Location, now_ms: int,
                   new_id: str) -> tuple[Incident, AuditEntry | None]:
    """Open an incident for a signal, or fold a repeat into the active one with the same key.

    A repeat raises severity if the signal is more severe, counts the event and moves the
    last-event time; it writes no audit entry unless it escalates severity.
    """
    if current is None or not current.state.is_active:
        incident = Incident(
            id=new_id, key=signal.key, device_id=signal.device_id, kind=signal.kind, condition=signal.condition,
            category=signal.category, severity=signal.severity, state=State.OPEN, title=signal.title,
            detail=signal.detail, location=location, opened_ms=now_ms, first_event_ms=signal.at_ms,
            last_event_ms=signal.at_ms, updated_ms=now_ms, scope=signal.scope, members=signal.members[:MAX_MEMBERS],
            flags=_merged_flags((), signal.flags),
        )
        return incident, AuditEntry(incident.id, now_ms, "system", "open", None, State.OPEN,
                                    _with_flags(signal.detail, signal.flags))
    if signal.downgrade:
        if signal.severity.rank >= current.severity.rank:
            return current, None
        lowered = replace(current, severity=signal.severity, detail=signal.detail, updated_ms=now_ms)
        note = f"severity {current.severity} → {signal.severity}: {signal.detail}"
        return lowered, AuditEntry(current.id, now_ms, "system", "downgrade_severity", current.state, current.state, note)
    escalates = signal.severity.rank > current.severity.rank
    updated = replace(
        current,
        event_count=current.event_count + 1,
        last_event_ms=max(current.last_event_ms, signal.at_ms),
        updated_ms=now_ms,
        severity=signal.severity if escalates else current.severity,
        detail=signal.detail if escalates or current.scope else current.detail,
        title=signal.title if escalates else current.title,
        members=_merged(current.members, signal.members),
        flags=_merged_flags(current.flags, signal.flags),
    )
    if escalates:
        note = f"severity {current.severity} → {signal.severity}: {signal.detail}"
        return updated, AuditEntry(current.id, now_ms, "system", "escalate_severity", current.state, current.state, note)
    if updated.flags != current.flags:
        added = tuple(f for f in updated.flags if f not in current.flags)
        return updated, AuditEntry(current.id, now_ms, "system", "flag", current.state, current.state,
                                   "数据质量：" + "；".join(added))
    return updated, None


MAX_FLAGS = 20  # an incident names this many distinct flags; more says nothing new


def _merged_flags(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    if not new:
        return old
    return (*old, *(f for f in dict.fromkeys(new) if f not in old))[:MAX_FLAGS]


def _with_flags(detail: str, flags: tuple[str, ...]) -> str:
    return f"{detail}；数据质量：{'；'.join(flags)}" if flags else detail


def _merged(old: tuple[str, ...], new: tuple[str, ...]) -> tuple[str, ...]:
    if not new or set(new) <= set(old):
        return old
    return tuple(sorted(set(old) | set(new)))[:MAX_MEMBERS]


def transition(incident: Incident, action: Action, actor: str, note: str, now_ms: int) -> tuple[Incident, AuditEntry]:
    """Apply a person's action, or raise ``IllegalTransition`` naming the state and the action."""
    allowed_from, to_state = TRANSITIONS[action]
    if incident.state not in allowed_from:
        raise IllegalTransition(incident.id, incident.state.value, action.value)
    new_state = to_state or incident.state
    changes: dict[str, object] = {"state": new_state, "updated_ms": now_ms}
    if action in (Action.ACKNOWLEDGE, Action.DISPATCH) and incident.acknowledged_ms is None:
        changes.update(acknowledged_ms=now_ms, acknowledged_by=actor)
    if new_state is not State.OPEN:
        changes["next_deadline_ms"] = None  # somebody has it: the climb stops
    if not new_state.is_active:
        changes["closed_ms"] = now_ms
    updated = replace(incident, **changes)  # type: ignore[arg-type]
    return updated, AuditEntry(incident.id, now_ms, actor, action.value, incident.state, new_state, note)


def clear_system(incident: Incident, now_ms: int, note: str) -> tuple[Incident, AuditEntry]:
    """A system incident whose condition cleared: closed by the system, the trail saying so.

    Not an ``Action``: no person can close an incident this way through the API.
    """
    closed = replace(incident, state=State.CLOSED, closed_ms=now_ms, updated_ms=now_ms, next_deadline_ms=None)
    return closed, AuditEntry(incident.id, now_ms, "system", "auto_close", incident.state, State.CLOSED, note)
# -- groups: members follow their group's end -------------------------------------------------------

GROUP_ENDS = (State.RESOLVED, State.CLOSED, State.FALSE_ALARM)  # the states a group takes its members to
_STATE_ZH = {State.RESOLVED: "处置完毕", State.CLOSED: "核查结案", State.FALSE_ALARM: "误报"}


def is_group(incident: Incident) -> bool:
    return bool(incident.scope) and bool(incident.members)


def members_of(group: Incident, candidates: Iterable[Incident]) -> list[Incident]:
    """The active single-device incidents a group carries: same category, a device the group names."""
    if not is_group(group):
        return []
    devices = set(group.members)
    return [i for i in candidates if i.id != group.id and not i.scope and i.state.is_active
            and i.device_id in devices and i.category == group.category]


def follow_group(member: Incident, group: Incident, actor: str, now_ms: int) -> tuple[Incident, AuditEntry] | None:
    """A member incident taken to its group's state (resolved, closed, false alarm); None if it is already there
    or past it. Its escalation stops; the trail says which group, and who ended it."""
    target = group.state
    if target not in GROUP_ENDS or not member.state.is_active:
        return None
    if target is State.RESOLVED and member.state is State.RESOLVED:
        return None
    changes: dict[str, object] = {"state": target, "updated_ms": now_ms, "next_deadline_ms": None}
    if not target.is_active:
        changes["closed_ms"] = now_ms
    updated = replace(member, **changes)  # type: ignore[arg-type]
    note = f"随群组事件 {group.id}（{group.subject}）{_STATE_ZH[target]}，由 {actor} 处理，升级停止"
    return updated, AuditEntry(member.id, now_ms, actor, "follow_group", member.state, target, note)


def split_member(group: Incident, device_id: str, actor: str, now_ms: int) -> tuple[Incident, AuditEntry]:
    """Take a device out of a group: the group no longer carries it (its own incident is handled on its own)."""
    if device_id not in group.members:
        raise Invalid(f"设备 {device_id} 不属于群组事件 {group.id}（not a member of this group）")
    if not group.state.is_active:
        raise IllegalTransition(group.id, group.state.value, "split")
    updated = replace(group, members=tuple(m for m in group.members if m != device_id), updated_ms=now_ms)
    note = f"设备 {device_id} 拆出单独处置（剩 {len(updated.members)} 个）"
    return updated, AuditEntry(group.id, now_ms, actor, "split", group.state, group.state, note)


def merge_into(source: Incident, group: Incident, actor: str, note: str,
               now_ms: int) -> tuple[Incident, Incident, list[AuditEntry]]:
    """Merge an incident into an active group: it ends as merged, the group carries its device from now on."""
    if source.id == group.id:
        raise Invalid("不能把事件并入它自己（cannot merge an incident into itself）")
    if not is_group(group) or not group.state.is_active:
        raise Invalid(f"事件 {group.id} 不是进行中的群组事件（merge only into an active group incident）")
    if source.drill != group.drill:
        raise Invalid("演练事件与真实事件不能合并（a drill incident and a real one cannot be merged）")
    merged, entry = transition(source, Action.MERGE, actor, f"并入 {group.id}（{group.subject}）" + (f"：{note}" if note
                                                                                               else ""), now_ms)
    members = group.members if source.device_id in group.members else _merged(group.members, (source.device_id,))
    bigger = replace(group, members=members, updated_ms=now_ms, event_count=group.event_count + source.event_count)
    into = AuditEntry(group.id, now_ms, actor, "merge_in", group.state, group.state,
                      f"并入事件 {source.id}（{source.title}，{source.device_id}）")
    return merged, bigger, [entry, into]


def stand_down_breach(breach: Incident, dispatch_id: str, actor: str, now_ms: int) -> tuple[Incident, AuditEntry]:
    """A "station late" incident about a dispatch that was called off: nobody is late any more; it closes."""
    updated = replace(breach, state=State.CLOSED, updated_ms=now_ms, next_deadline_ms=None, closed_ms=now_ms)
    note = f"派单 {dispatch_id} 已撤销（警情已结束），不再计超时"
    return updated, AuditEntry(breach.id, now_ms, actor, "stand_down", breach.state, State.CLOSED, note)
