"""Who is reached how: contact points per person, notification rules per role and severity, and the plan.

Pure: no I/O. A notice (one person, one incident, one escalation step) becomes planned
attempts: the rule for the person's role at the incident's urgency lists steps, each a time
after the notice and the channels to use then (all of them, or the first one the person
has). A channel uses the person's first contact point of a kind it can use (``sms`` a mobile,
``voice`` a mobile or a landline). Later contact points of the same kind are kept as
stand-ins: one takes over when the one before it failed (fall-through).

Defaults (``DEFAULT_RULES``), which operators override per role and urgency (stored rules):

    critical   voice and SMS at once
    high       WeCom, DingTalk, Feishu and SMS at once; a voice call if nobody answered in 2 minutes
    low        the first of WeCom, DingTalk, Feishu, e-mail

The fire service (119) is phoned by the operations centre's people, never by a robot: its
role has no automatic attempts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from alerts.notify.base import CHANNEL_CONTACTS, Channel, ContactKind

MOBILE = re.compile(r"^(\+?86)?1[3-9][0-9]{9}$")


class Urgency:
    CRITICAL, HIGH, LOW = "critical", "high", "low"
    ALL = (CRITICAL, HIGH, LOW)


def urgency_of(severity: str) -> str:
    """An incident's severity as a notification urgency: critical, high, or low (warning and info)."""
    return severity if severity in (Urgency.CRITICAL, Urgency.HIGH) else Urgency.LOW


@dataclass(frozen=True, slots=True)
class ContactPoint:
    person: str
    kind: ContactKind
    address: str
    priority: int = 0  # lower first
    drill: bool = False  # a test contact: drills reach only these


@dataclass(frozen=True, slots=True)
class RuleStep:
    after_s: int
    channels: tuple[Channel, ...]
    first_only: bool = False  # "WeCom or e-mail": the first channel the person has a contact point for

    def as_dict(self) -> dict[str, object]:
        return {"after_s": self.after_s, "channels": [c.value for c in self.channels], "first_only": self.first_only}


@dataclass(frozen=True, slots=True)
class NotifyRule:
    role: str  # "*" for every role without a rule of its own
    urgency: str
    steps: tuple[RuleStep, ...]


V, S, W, D, F, E = Channel.VOICE, Channel.SMS, Channel.WECOM, Channel.DINGTALK, Channel.FEISHU, Channel.EMAIL
_DEFAULT_STEPS: dict[str, tuple[RuleStep, ...]] = {
    Urgency.CRITICAL: (RuleStep(0, (V, S)),),
    Urgency.HIGH: (RuleStep(0, (W, D, F, S)), RuleStep(120, (V,))),
    Urgency.LOW: (RuleStep(0, (W, D, F, E), first_only=True),),
}
DEFAULT_RULES: dict[tuple[str, str], NotifyRule] = {
    ("*", u): NotifyRule("*", u, steps) for u, steps in _DEFAULT_STEPS.items()
} | {("fire_rescue", u): NotifyRule("fire_rescue", u, ()) for u in Urgency.ALL}


def rule_for(role: str, urgency: str, stored: dict[tuple[str, str], NotifyRule]) -> NotifyRule:
    """The stored rule for the role, else the role's default, else the stored or default rule for every role."""
    for rules, key in ((stored, (role, urgency)), (DEFAULT_RULES, (role, urgency)), (stored, ("*", urgency)),
                       (DEFAULT_RULES, ("*", urgency))):
        if key in rules:
            return rules[key]
    raise KeyError(urgency)


def contact_points_from_phone(person: str, phone: str) -> list[ContactPoint]:
    """What the street's data gives: a mobile (SMS and voice) or a landline (voice only)."""
    number = re.sub(r"[\s-]", "", phone)
    if not number:
        return []
    if MOBILE.match(number):
        return [ContactPoint(person, ContactKind.MOBILE, number, priority=100)]
    if number.isdigit() and len(number) >= 7:  # 119 and other short numbers are not phoned by a robot
        return [ContactPoint(person, ContactKind.PHONE, number, priority=100)]
    return []


@dataclass(frozen=True, slots=True)
class PlannedAttempt:
    person: str
    channel: Channel
    address: str
    kind: ContactKind
    after_s: int
    rule_step: int
    standby: bool = False  # takes over only when the attempt before it on this channel failed
    mention_mobile: str = ""


@dataclass(frozen=True, slots=True)
class Plan:
    attempts: tuple[PlannedAttempt, ...]
    missing: tuple[Channel, ...] = field(default=())  # channels the rule wanted that the person has nothing for


def plan(person: str, rule: NotifyRule, contacts: list[ContactPoint], available: set[Channel]) -> Plan:
    """The attempts for one person by one rule (``available``: the channels this installation can send on)."""
    by_kind: dict[ContactKind, list[ContactPoint]] = {}
    for cp in sorted(contacts, key=lambda c: (c.priority, c.address)):
        by_kind.setdefault(cp.kind, []).append(cp)
    mobile = next((c.address for c in by_kind.get(ContactKind.MOBILE, ())), "")
    out: list[PlannedAttempt] = []
    missing: list[Channel] = []
    for step_no, step in enumerate(rule.steps):
        for channel in step.channels:
            points = [cp for kind in CHANNEL_CONTACTS[channel] for cp in by_kind.get(kind, ())]
            if channel not in available or not points:
                if not step.first_only:
                    missing.append(channel)
                continue
            for i, cp in enumerate(points):
                out.append(PlannedAttempt(person, channel, cp.address, cp.kind, step.after_s, step_no, standby=i > 0,
                                          mention_mobile=mobile if channel in (W, D, F) else ""))
            if step.first_only:
                break
        else:
            if step.first_only:
                missing.extend(step.channels)
    return Plan(tuple(out), tuple(dict.fromkeys(missing)))
