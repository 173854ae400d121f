"""Escalation policies and rule thresholds as data: a validated document, versioned in the database.

The document (JSON; the default ships as ``alerts/policies.json``) says who each step of
each policy tells, at which tiers, how long they have to acknowledge, how often the last
step repeats, which policy an incident of a category and severity follows, and the kinds'
rule thresholds that differ from the rules' own defaults:

    {"format": 1,
     "policies": {"fire": {"steps": [{"tiers": ["building", "community"], "ack_within_s": 60,
                                      "roles": ["property"], "fire_station": true}, ...],
                           "repeat_last": null}, ...},
     "routes": [{"category": "fire", "severity": "high", "policy": "fire"}, ...],
     "response_breach": "response-breach", "fallback": "maintenance", "fallback_critical": "welfare-critical",
     "thresholds": {"charging_station": {"port_temp_c": 60}}}

``parse_policy_document`` checks it whole and raises ``Invalid`` naming the first thing wrong
(an unknown tier or role, a route to a missing policy, a deadline out of range, a threshold no
rule has). A ``PolicySet`` is the checked document, immutable; the escalation functions take one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alerts.incidents import Severity
from devices.hierarchy import ROLE_LABELS, Tier
from foundation.errors import Invalid

MIN_ACK_S = 10  # shorter than a person can read a message
MAX_ACK_S = 7 * 24 * 3600  # a week: longer is not an escalation any more
MAX_REPEATS = 100
DEFAULT_FILE = "policies.json"


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
    repeat_last: int | None = None  # times the last step is sent again unacknowledged; None: until someone answers

    def step(self, step_no: int) -> Step:
        """The step an incident at ``step_no`` is on (past the last: the last, repeated)."""
        return self.steps[min(step_no, len(self.steps) - 1)]

    def repeats_left(self, step_no: int) -> bool:
        """After ``step_no``'s deadline passes, does anything happen (a next step, or the last one again)?"""
        if step_no + 1 < len(self.steps) or self.repeat_last is None:
            return True
        return step_no - (len(self.steps) - 1) < self.repeat_last


# -- the document, as pydantic checks it ------------------------------------------------------------------------------

_TIER_NAMES = {t.name.lower(): t for t in Tier}


class _StepDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tiers: list[Literal["building", "community", "area", "street", "district"]] = Field(min_length=1)
    ack_within_s: int = Field(ge=MIN_ACK_S, le=MAX_ACK_S)
    roles: list[str] = []
    fire_station: bool = False
    household: bool = False


class _PolicyDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: list[_StepDoc] = Field(min_length=1, max_length=20)
    repeat_last: int | None = Field(default=None, ge=0, le=MAX_REPEATS)


class _RouteDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: str = Field(min_length=1, max_length=40)
    severity: Severity
    policy: str


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal[1]
    policies: dict[str, _PolicyDoc] = Field(min_length=1)
    routes: list[_RouteDoc] = Field(min_length=1)
    response_breach: str
    fallback: str
    fallback_critical: str
    thresholds: dict[str, dict[str, float]] = {}

    @model_validator(mode="after")
    def _references(self) -> _Document:
        for name in self.policies:
            if not name or len(name) > 40:
                raise ValueError(f"policy name {name!r} must be 1 to 40 characters")
        for which in ("response_breach", "fallback", "fallback_critical"):
            if getattr(self, which) not in self.policies:
                raise ValueError(f"{which} names policy {getattr(self, which)!r}, which is not among the policies")
        seen: set[tuple[str, str]] = set()
        for r in self.routes:
            if r.policy not in self.policies:
                raise ValueError(f"route {r.category}/{r.severity.value} names policy {r.policy!r}, "
                                 f"which is not among the policies")
            if (r.category, r.severity.value) in seen:
                raise ValueError(f"route {r.category}/{r.severity.value} is given twice")
            seen.add((r.category, r.severity.value))
        return self


@dataclass(frozen=True)
class PolicySet:
    """One checked version of the document: what escalation follows and the thresholds the rules read."""

    policies: Mapping[str, Policy]
    routes: Mapping[tuple[str, Severity], str]
    response_breach: str
    fallback: str
    fallback_critical: str
    thresholds: Mapping[str, Mapping[str, float]]
    document: Mapping[str, Any] = field(repr=False)
    version: int = 0  # 0: not stored (the shipped file, a draft)

    def policy_for(self, category: str, severity: Severity, condition: str = "") -> Policy:
        """The policy for a category at a severity; lower severities of a category share its HIGH policy.

        A responder late to answer (``dispatch_…``) gets the response-breach policy; a category with no route
        the critical fallback when critical, else the fallback (maintenance)."""
        if condition.startswith("dispatch_"):
            return self.policies[self.response_breach]
        for sev in (severity, Severity.HIGH):
            name = self.routes.get((category, sev))
            if name is not None:
                return self.policies[name]
        return self.policies[self.fallback_critical if severity is Severity.CRITICAL else self.fallback]

    @property
    def digest(self) -> str:
        return document_digest(self.document)

    def with_version(self, version: int) -> PolicySet:
        return PolicySet(self.policies, self.routes, self.response_breach, self.fallback, self.fallback_critical,
                         self.thresholds, self.document, version)


def document_digest(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()[:16]


def canonical_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def parse_policy_document(raw: str | bytes | Mapping[str, Any], *, known_roles: Set[str] | None = None,
                          threshold_defaults: Mapping[str, Mapping[str, float]] | None = None) -> PolicySet:
    """Check a policy document and build its ``PolicySet``; ``Invalid`` says what is wrong and where.

    ``known_roles``: the roles a step may name (default: every role the hierarchy knows a label for);
    ``threshold_defaults``: kind → threshold → the rule's default; when given, every threshold must be one.
    """
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise Invalid(f"策略文件不是有效的 JSON（the policy document is not JSON: {exc}）") from None
    if not isinstance(raw, Mapping):
        raise Invalid("策略文件须为 JSON 对象（the policy document must be a JSON object）")
    try:
        doc = _Document.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise Invalid(f"策略文件有误（policy document invalid）: {where}: {first['msg']}"
                      + (f" ({exc.error_count() - 1} more)" if exc.error_count() > 1 else "")) from None
    roles = set(ROLE_LABELS) if known_roles is None else set(known_roles)
    policies: dict[str, Policy] = {}
    for name, p in doc.policies.items():
        steps = []
        for n, s in enumerate(p.steps):
            unknown = sorted(set(s.roles) - roles)
            if unknown:
                raise Invalid(f"策略文件有误（policy document invalid）: policies.{name}.steps.{n}.roles: "
                              f"unknown role {', '.join(unknown)}; known: {', '.join(sorted(roles))}")
            steps.append(Step(tuple(_TIER_NAMES[t] for t in s.tiers), s.ack_within_s, tuple(s.roles),
                              s.fire_station, s.household))
        policies[name] = Policy(name, tuple(steps), p.repeat_last)
    for kind, values in doc.thresholds.items():
        for tname, value in values.items():
            if value != value or value in (float("inf"), float("-inf")):
                raise Invalid(f"策略文件有误（policy document invalid）: thresholds.{kind}.{tname}: not a finite number")
            if threshold_defaults is not None and tname not in threshold_defaults.get(kind, {}):
                known = ", ".join(sorted(threshold_defaults.get(kind, {}))) or "none (no such kind)"
                raise Invalid(f"策略文件有误（policy document invalid）: thresholds.{kind}.{tname}: "
                              f"no rule has this threshold; {kind}'s thresholds: {known}")
    document = doc.model_dump(mode="json", exclude_defaults=False)
    return PolicySet(policies, {(r.category, r.severity): r.policy for r in doc.routes}, doc.response_breach,
                     doc.fallback, doc.fallback_critical,
                     {k: dict(v) for k, v in doc.thresholds.items()}, document)


def default_document_text() -> str:
    """The shipped policy file (``alerts/policies.json``)."""
    return resources.files("alerts").joinpath(DEFAULT_FILE).read_text("utf-8")


def load_default() -> PolicySet:
    return parse_policy_document(default_document_text())


def pretty_json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2)


def describe_changes(old: PolicySet, new: PolicySet) -> list[str]:
    """What a new version changes, one line each (for the audit trail and the page): steps, deadlines, whom, routes."""
    out: list[str] = []
    for name in sorted(set(old.policies) | set(new.policies)):
        a, b = old.policies.get(name), new.policies.get(name)
        if a is None:
            out.append(f"新增策略 {name}（policy added）")
            continue
        if b is None:
            out.append(f"删除策略 {name}（policy removed）")
            continue
        for n in range(max(len(a.steps), len(b.steps))):
            sa = a.steps[n] if n < len(a.steps) else None
            sb = b.steps[n] if n < len(b.steps) else None
            where = f"{name} 第{n + 1}级"
            if sa is None:
                out.append(f"{where}：新增（step added）")
            elif sb is None:
                out.append(f"{where}：删除（step removed）")
            else:
                if sa.ack_within_s != sb.ack_within_s:
                    out.append(f"{where}：确认时限 {sa.ack_within_s} s → {sb.ack_within_s} s")
                if sa.tiers != sb.tiers:
                    out.append(f"{where}：层级 {_tiers(sa)} → {_tiers(sb)}")
                if sa.roles != sb.roles:
                    out.append(f"{where}：角色 {','.join(sa.roles) or '全部'} → {','.join(sb.roles) or '全部'}")
                if (sa.fire_station, sa.household) != (sb.fire_station, sb.household):
                    out.append(f"{where}：派微型消防站 {sa.fire_station}→{sb.fire_station}，"
                               f"通知家属 {sa.household}→{sb.household}")
        if a.repeat_last != b.repeat_last:
            out.append(f"{name}：最高级重复 {_repeats(a)} → {_repeats(b)}")
    for key in sorted(set(old.routes) | set(new.routes), key=lambda k: (k[0], k[1].value)):
        if old.routes.get(key) != new.routes.get(key):
            out.append(f"路由 {key[0]}/{key[1].value}：{old.routes.get(key, '—')} → {new.routes.get(key, '—')}")
    for which in ("response_breach", "fallback", "fallback_critical"):
        if getattr(old, which) != getattr(new, which):
            out.append(f"{which}：{getattr(old, which)} → {getattr(new, which)}")
    for kind in sorted(set(old.thresholds) | set(new.thresholds)):
        ta, tb = old.thresholds.get(kind, {}), new.thresholds.get(kind, {})
        for tname in sorted(set(ta) | set(tb)):
            if ta.get(tname) != tb.get(tname):
                out.append(f"阈值 {kind}.{tname}：{ta.get(tname, '默认')} → {tb.get(tname, '默认')}")
    return out


def _tiers(step: Step) -> str:
    return "+".join(t.name.lower() for t in step.tiers)


def _repeats(policy: Policy) -> str:
    return "直至确认" if policy.repeat_last is None else f"{policy.repeat_last} 次"
