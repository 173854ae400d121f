"""What a scenario expects of the running system, checked through its HTTP API.

Each expectation is a small frozen value that names one observable outcome and judges it
from ``Evidence`` (what the API showed): incidents with their severity, tier, state, scope
and members; when each was opened (the service's clock, which a scenario shares) and when
each tier was first seen; dead letters per reason; ingest counters; devices' health.

Times are simulated seconds after a named mark of the scenario (``start`` unless told).
Tiers climb building < community < area < street < district; "reaching" a tier means the
incident was seen at that tier or higher.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TIERS = ("building", "community", "area", "street", "district")
SEVERITIES = ("info", "warning", "high", "critical")


def tier_rank(tier: str | None) -> int:
    return TIERS.index(tier) + 1 if tier in TIERS else 0


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


@dataclass
class Evidence:
    """What the API showed, gathered by the scenario runner."""

    incidents: list[dict[str, Any]] = field(default_factory=list)
    tier_seen_ms: dict[tuple[str, str], int] = field(default_factory=dict)  # (incident id, tier) → first seen (sim ms)
    marks: dict[str, int] = field(default_factory=dict)  # mark name → sim ms
    dead_letters: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    devices: list[dict[str, Any]] = field(default_factory=list)  # the scenario's devices as the API shows them

    def matching(self, condition: str, device: str = "*", kind: str = "*", scope: str = "*") -> list[dict[str, Any]]:
        return [i for i in self.incidents
                if fnmatch.fnmatchcase(i["condition"], condition) and fnmatch.fnmatchcase(i["device_id"], device)
                and fnmatch.fnmatchcase(i["kind"], kind) and fnmatch.fnmatchcase(i.get("scope") or "", scope)]


@dataclass(frozen=True, slots=True)
class Outcome:
    expectation: str
    met: bool
    detail: str
    checkpoint: str = "end"

    def as_dict(self) -> dict[str, Any]:
        return {"expectation": self.expectation, "met": self.met, "detail": self.detail, "checkpoint": self.checkpoint}


def _short(incidents: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(f"{i['condition']}@{i['device_id']} {i['severity']} {i['state']} tier={i.get('tier') or '-'}"
                     for i in incidents[:6]) or "none"


@dataclass(frozen=True)
class ExpectIncident:
    """Incidents of a condition (fnmatch pattern): how many, how serious, how high, how soon."""

    condition: str
    severity: str | None = None  # the severity it has when checked
    tier: str | None = None  # reached at least this tier...
    tier_within_s: float | None = None  # ...within this long after the mark
    within_s: float | None = None  # opened within this long after the mark
    count: int | None = 1  # exactly this many; None: at least ``at_least``
    at_least: int = 1
    device: str = "*"
    kind: str = "*"
    scope: str = "*"
    state: str | None = None  # "open", "acknowledged|dispatched" (any of them); "active": any state before closure
    members_at_least: int = 0
    max_event_count: int | None = None
    after: str = "start"
    at: str = "end"  # the checkpoint at which it is judged

    def describe(self) -> str:
        how_many = f"exactly {self.count}" if self.count is not None else f"at least {self.at_least}"
        parts = [f"{how_many} incident(s) {self.condition}"]
        if self.device != "*":
            parts.append(f"of {self.device}")
        if self.scope != "*":
            parts.append(f"scope {self.scope}")
        if self.severity:
            parts.append(f"severity {self.severity}")
        if self.state:
            parts.append(f"state {self.state}")
        if self.within_s is not None:
            parts.append(f"opened within {self.within_s:g} s of {self.after}")
        if self.tier:
            when = f" within {self.tier_within_s:g} s" if self.tier_within_s is not None else ""
            parts.append(f"reaching tier {self.tier}{when}")
        if self.members_at_least:
            parts.append(f"gathering ≥ {self.members_at_least} devices")
        if self.max_event_count is not None:
            parts.append(f"counting ≤ {self.max_event_count} events")
        return ", ".join(parts)

    def check(self, ev: Evidence) -> Outcome:
        found = ev.matching(self.condition, self.device, self.kind, self.scope)
        problems: list[str] = []
        if self.count is not None and len(found) != self.count:
            problems.append(f"found {len(found)}")
        elif self.count is None and len(found) < self.at_least:
            problems.append(f"found only {len(found)}")
        mark = ev.marks.get(self.after, ev.marks.get("start", 0))
        for inc in found:
            who = f"{inc['condition']}@{inc['device_id']}"
            if self.severity and inc["severity"] != self.severity:
                problems.append(f"{who} is {inc['severity']}")
            if self.state == "active" and inc["state"] in ("closed", "false_alarm", "merged") or self.state and self.state != "active" and inc["state"] not in self.state.split("|"):
                problems.append(f"{who} is {inc['state']}")
            if self.within_s is not None:
                took = (iso_ms(inc["opened_at"]) - mark) / 1000
                if took > self.within_s:
                    problems.append(f"{who} opened {took:.0f} s after {self.after}")
            if self.tier:
                seen = [ms for (iid, tier), ms in ev.tier_seen_ms.items()
                        if iid == inc["id"] and tier_rank(tier) >= tier_rank(self.tier)]
                if tier_rank(inc.get("tier")) < tier_rank(self.tier) and not seen:
                    problems.append(f"{who} reached only tier {inc.get('tier') or 'none'}")
                elif self.tier_within_s is not None:
                    took = (min(seen) - mark) / 1000 if seen else float("inf")
                    if took > self.tier_within_s:
                        problems.append(f"{who} reached {self.tier} {took:.0f} s after {self.after}")
            if self.members_at_least and len(inc.get("members") or ()) < self.members_at_least:
                problems.append(f"{who} gathers {len(inc.get('members') or ())} devices")
            if self.max_event_count is not None and inc["event_count"] > self.max_event_count:
                problems.append(f"{who} counted {inc['event_count']} events")
        detail = "; ".join(problems[:8]) if problems else f"seen: {_short(found)}"
        return Outcome(self.describe(), not problems, detail, self.at)


@dataclass(frozen=True)
class ExpectNoIncident:
    """No incident of these conditions (fnmatch patterns), e.g. no suspected fire from one kitchen."""

    conditions: tuple[str, ...] = ("*",)
    device: str = "*"
    kind: str = "*"
    at: str = "end"

    def describe(self) -> str:
        of = f" of {self.device}" if self.device != "*" else (f" of kind {self.kind}" if self.kind != "*" else "")
        return f"no incident {' / '.join(self.conditions)}{of}"

    def check(self, ev: Evidence) -> Outcome:
        found = [i for c in self.conditions for i in ev.matching(c, self.device, self.kind)]
        return Outcome(self.describe(), not found, f"found {len(found)}: {_short(found)}" if found else "none", self.at)


@dataclass(frozen=True)
class ExpectDeadLetters:
    """Rejected messages kept with their reason (fnmatch, ``*`` for all): exactly ``count``, or at least ``at_least``."""

    reason: str
    count: int | None = None
    at_least: int = 1
    at: str = "end"

    def describe(self) -> str:
        how_many = f"exactly {self.count}" if self.count is not None else f"at least {self.at_least}"
        return f"{how_many} dead letter(s) {'of any reason' if self.reason == '*' else self.reason}"

    def check(self, ev: Evidence) -> Outcome:
        kept = {r: n for r, n in ev.dead_letters.items() if fnmatch.fnmatchcase(r, self.reason)}
        n = sum(kept.values())
        met = n == self.count if self.count is not None else n >= self.at_least
        return Outcome(self.describe(), met, f"{n} kept ({', '.join(f'{r} {c}' for r, c in kept.items()) or 'none'})",
                       self.at)


@dataclass(frozen=True)
class ExpectStat:
    """An ingest counter of ``/api/stats`` (``duplicates``, ``readings``, ``rejected.bad_json``…) within bounds."""

    name: str
    at_least: float = 0
    at_most: float | None = None
    at: str = "end"

    def describe(self) -> str:
        upper = f" and ≤ {self.at_most:g}" if self.at_most is not None else ""
        return f"ingest counter {self.name} ≥ {self.at_least:g}{upper}"

    def check(self, ev: Evidence) -> Outcome:
        value: Any = ev.stats
        for part in self.name.split("."):
            value = value.get(part, 0) if isinstance(value, dict) else 0
        n = float(value or 0)
        met = n >= self.at_least and (self.at_most is None or n <= self.at_most)
        return Outcome(self.describe(), met, f"{self.name} = {n:g}", self.at)


@dataclass(frozen=True)
class ExpectDevices:
    """The scenario's devices (of a kind, matching a pattern) as the registry sees them: health or last message."""

    health: str | None = None  # online, offline, low_battery, tampered, never_seen
    last_type: str | None = None
    kind: str = "*"
    device: str = "*"
    at_least: int = 1
    every: bool = False  # every one of them, however many
    at: str = "end"

    def describe(self) -> str:
        what = f"health {self.health}" if self.health else f"last message {self.last_type}"
        of = self.device if self.device != "*" else (self.kind if self.kind != "*" else "devices")
        return f"{'every one' if self.every else f'at least {self.at_least}'} of {of} with {what}"

    def check(self, ev: Evidence) -> Outcome:
        pool = [d for d in ev.devices
                if fnmatch.fnmatchcase(d["kind"], self.kind) and fnmatch.fnmatchcase(d["device_id"], self.device)]
        ok = [d for d in pool if (self.health is None or self.health in d["health"])
              and (self.last_type is None or d.get("last_type") == self.last_type)]
        met = (bool(pool) and len(ok) == len(pool)) if self.every else len(ok) >= self.at_least
        missing = [d["device_id"] for d in pool if d not in ok][:5]
        return Outcome(self.describe(), met, f"{len(ok)} of {len(pool)}" + (f" (not: {', '.join(missing)}…)"
                                                                               if missing and self.every else ""), self.at)


Expectation = ExpectIncident | ExpectNoIncident | ExpectDeadLetters | ExpectStat | ExpectDevices
