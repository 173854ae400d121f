"""What a scenario expects of the running system, checked through its HTTP API.

Each expectation is a small frozen value that names one observable outcome and judges it
from ``Evidence`` (what the API showed): incidents with their severity, tier, state, scope
and members; when each was opened (the service's clock, which a scenario shares) and when
each tier was first seen; dead letters per reason; ingest counters; devices' health.

Times are simulated seconds after a named mark of the scenario (``start`` unless told).
Tiers climb building < community < area < street < district; "reaching" a tier means the
incident was seen at that tier or higher.

Each expectation and each outcome reads two ways: ``describe()`` and ``Outcome.detail`` in
the machine's terms (condition codes, device patterns; for the CLI, logs and tests), and
``describe_zh()`` and ``Outcome.detail_zh`` as Chinese sentences for the testers' page
(0301室烟感报警（高），已到场，已报至居民区). A scenario names its marks in Chinese
(``Scenario.marks``), passed in as ``marks``; an expectation whose patterns no generated
sentence says well carries its own ``text``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from devices.kinds import SLICES

TIERS = ("building", "community", "area", "street", "district")
SEVERITIES = ("info", "warning", "high", "critical")

# The words of the operations screens (dashboards/static/ops.js), for the testers' page.
SEVERITY_ZH = {"info": "低", "warning": "中", "high": "高", "critical": "紧急"}
STATE_ZH = {"open": "待响应", "acknowledged": "已确认", "dispatched": "已派单", "on_scene": "已到场",
            "resolved": "已处置", "closed": "已结案", "false_alarm": "误报", "merged": "已合并", "active": "未结案"}
TIER_ZH = {"building": "楼栋", "community": "居民区", "area": "片区", "street": "街道", "district": "区"}
# Conditions of no one kind; each kind's own come from its slice (devices/kinds/<kind>/).
CONDITION_ZH = {
    "offline": "设备离线", "mass_offline": "大面积离线",
    **{c: zh for s in SLICES.values() for c, zh in s.conditions_zh.items()},
}
DEVICE_ZH = {s.id_prefix: s.short_label for s in SLICES.values()}  # by the prefix of a device id: SD-XQ01-0101
KIND_ZH = {name: s.short_label for name, s in SLICES.items()}
HEALTH_ZH = {"online": "在线", "offline": "离线", "low_battery": "低电量", "tampered": "防拆报警", "never_seen": "从未上线"}
MESSAGE_ZH = {"alarm": "报警", "alarm_cleared": "消警", "heartbeat": "心跳", "online": "上线", "offline": "离线"}
REASON_ZH = {
    "bad_json": "JSON 格式错误", "invalid_field": "字段值不合法", "missing_field": "缺少字段", "oversized": "消息过大",
    "unknown_type": "未知消息类型", "wrong_class": "主题类别不符", "unregistered_device": "未登记设备",
    "kind_mismatch": "设备种类与登记不符", "bad_topic": "主题不合法", "seq_backwards": "序号倒退",
    "ts_past": "时间戳过旧", "ts_future": "时间戳超前", "bad_utf8": "非 UTF-8 编码", "too_deep": "JSON 嵌套过深",
    "missing_type": "缺少消息类型",
}
STAT_ZH = {"duplicates": "重复消息", "readings": "读数", "received": "收到的消息"}
_WILD = re.compile(r"[*?\[]")


def _seconds_zh(s: float) -> str:
    if s >= 3600 and s % 360 == 0:
        return f"{s / 3600:g} 小时"
    if s >= 60 and s % 60 == 0:
        return f"{s / 60:g} 分钟"
    return f"{s:g} 秒"


def _mark_zh(mark: str, marks: Mapping[str, str]) -> str:
    return marks.get(mark) or ("开始" if mark == "start" else f"「{mark}」")


def condition_zh(pattern: str) -> str:
    """A condition pattern in words: ``charging_full:2`` 2 号口充满后仍供电, ``port_overheat:[!3]*`` 3 号口以外的充电口过热."""
    if pattern == "*":
        return "任何警情"
    base, _, port = pattern.partition(":")
    name = CONDITION_ZH.get(base)
    if name is None:
        return pattern
    if port.isdigit():
        return f"{port} 号口{name}"
    if (m := re.fullmatch(r"\[!(\d)\]\*", port)) is not None:
        return f"{m.group(1)} 号口以外的{name}"
    return name


def device_zh(pattern: str) -> str:
    """A device (pattern) in words: ``SD-XQ01-0301`` 0301室烟感; a pattern names its kind and itself."""
    prefix = pattern.split("-", 1)[0]
    what = DEVICE_ZH.get(prefix, "设备")
    if _WILD.search(pattern):
        return f"{what}（{pattern}）"
    if (m := re.fullmatch(r"[A-Z]+-[A-Z]+\d+-(\d{3,4})", pattern)) is not None:
        return f"{m.group(1)}室{what}"
    return f"{what} {pattern}"


def _whose_zh(device: str, scope: str, what: str) -> str:
    """Whose incidents, in as few words as say it: 0301室 (the condition names the kind), 楼栋 xq-01 的."""
    if scope != "*":
        tier, _, where = scope.partition(":")
        return "全街道" if tier == "street" else f"{TIER_ZH.get(tier, tier)} {where} "
    if device == "*":
        return ""
    if (m := re.fullmatch(r"[A-Z]+-[A-Z]+\d+-(\d{3,4})", device)) is not None:
        return f"{m.group(1)}室"
    kind = DEVICE_ZH.get(device.split("-", 1)[0], "")
    return "" if kind and kind in what and not _WILD.search(device) else f"{device_zh(device)}的"


def incident_zh(inc: Mapping[str, Any]) -> str:
    """One incident as the page says it: 0301室烟感报警（高），已到场，已报至居民区."""
    unit = (inc.get("location") or {}).get("unit") or ""
    where = inc.get("subject") if inc.get("scope") else (f"{unit}室" if unit else device_zh(inc["device_id"]))
    title = inc.get("title") or condition_zh(inc["condition"])
    tier = inc.get("tier")
    told = f"，已报至{TIER_ZH.get(tier, tier)}" if tier else ""
    return (f"{where}{'：' if inc.get('scope') else ''}{title}（{SEVERITY_ZH.get(inc['severity'], inc['severity'])}），"
            f"{STATE_ZH.get(inc['state'], inc['state'])}{told}")


def _short_zh(incidents: Sequence[Mapping[str, Any]]) -> str:
    more = f"等 {len(incidents)} 起" if len(incidents) > 3 else ""
    return "；".join(incident_zh(i) for i in incidents[:3]) + more


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
    mark_names: Mapping[str, str] = field(default_factory=dict)  # mark name → its Chinese words (Scenario.marks)
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
    expectation_zh: str = ""  # the same, in Chinese for the testers' page
    detail_zh: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"expectation": self.expectation, "met": self.met, "detail": self.detail, "checkpoint": self.checkpoint,
                "expectation_zh": self.expectation_zh, "detail_zh": self.detail_zh}


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
    text: str = ""  # its Chinese sentence, when the generated one would not say it well

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

    def describe_zh(self, marks: Mapping[str, str] | None = None) -> str:
        if self.text:
            return self.text
        what = condition_zh(self.condition)
        if self.condition == "*":
            how_many = f"共 {self.count} 起" if self.count is not None else f"至少 {self.at_least} 起"
            parts = [f"全部警情{how_many}"]
        else:
            how_many = (("一起" if self.count == 1 else f"{self.count} 起") if self.count is not None
                        else f"至少 {self.at_least} 起")
            parts = [f"{_whose_zh(self.device, self.scope, what)}{what}{how_many}"]
        if self.severity:
            parts[0] += f"（{SEVERITY_ZH.get(self.severity, self.severity)}）"
        if self.within_s is not None:
            parts.append(f"{_mark_zh(self.after, marks or {})}后 {_seconds_zh(self.within_s)}内生成")
        if self.members_at_least:
            parts.append(f"汇集至少 {self.members_at_least} 台设备")
        if self.tier:
            when = f"{_seconds_zh(self.tier_within_s)}内" if self.tier_within_s is not None else ""
            parts.append(f"{when}报至{TIER_ZH.get(self.tier, self.tier)}")
        if self.state:
            states = [STATE_ZH.get(x, x) for x in self.state.split("|")]
            parts.append("、".join(states[:-1]) + "或" + states[-1] if len(states) > 1 else states[0])
        if self.max_event_count is not None:
            parts.append(f"最多计 {self.max_event_count} 次")
        return "，".join(parts)

    def check(self, ev: Evidence) -> Outcome:
        found = ev.matching(self.condition, self.device, self.kind, self.scope)
        problems: list[tuple[str, str]] = []  # (for the machine, 中文)
        if self.count is not None and len(found) != self.count:
            problems.append((f"found {len(found)}", f"实有 {len(found)} 起"))
        elif self.count is None and len(found) < self.at_least:
            problems.append((f"found only {len(found)}", f"仅有 {len(found)} 起"))
        mark = ev.marks.get(self.after, ev.marks.get("start", 0))
        after_zh = _mark_zh(self.after, ev.mark_names)
        for inc in found:
            who = f"{inc['condition']}@{inc['device_id']}"
            who_zh = incident_zh(inc).split("（")[0]
            if self.severity and inc["severity"] != self.severity:
                problems.append((f"{who} is {inc['severity']}",
                                 f"{who_zh}级别为{SEVERITY_ZH.get(inc['severity'], inc['severity'])}"))
            if self.state == "active" and inc["state"] in ("closed", "false_alarm", "merged") or self.state and self.state != "active" and inc["state"] not in self.state.split("|"):
                problems.append((f"{who} is {inc['state']}", f"{who_zh}状态为{STATE_ZH.get(inc['state'], inc['state'])}"))
            if self.within_s is not None:
                took = (iso_ms(inc["opened_at"]) - mark) / 1000
                if took > self.within_s:
                    problems.append((f"{who} opened {took:.0f} s after {self.after}",
                                     f"{who_zh}在{after_zh}后 {took:.0f} 秒才生成"))
            if self.tier:
                seen = [ms for (iid, tier), ms in ev.tier_seen_ms.items()
                        if iid == inc["id"] and tier_rank(tier) >= tier_rank(self.tier)]
                if tier_rank(inc.get("tier")) < tier_rank(self.tier) and not seen:
                    reached = TIER_ZH.get(inc.get("tier") or "", "无")
                    problems.append((f"{who} reached only tier {inc.get('tier') or 'none'}", f"{who_zh}只报至{reached}"))
                elif self.tier_within_s is not None:
                    took = (min(seen) - mark) / 1000 if seen else float("inf")
                    if took > self.tier_within_s:
                        problems.append((f"{who} reached {self.tier} {took:.0f} s after {self.after}",
                                         f"{who_zh}在{after_zh}后 {took:.0f} 秒才报至{TIER_ZH.get(self.tier, self.tier)}"))
            if self.members_at_least and len(inc.get("members") or ()) < self.members_at_least:
                n = len(inc.get("members") or ())
                problems.append((f"{who} gathers {n} devices", f"{who_zh}只汇集 {n} 台设备"))
            if self.max_event_count is not None and inc["event_count"] > self.max_event_count:
                problems.append((f"{who} counted {inc['event_count']} events", f"{who_zh}计了 {inc['event_count']} 次"))
        if problems:
            detail, detail_zh = "; ".join(p[0] for p in problems[:8]), "；".join(p[1] for p in problems[:8])
        else:
            detail, detail_zh = f"seen: {_short(found)}", f"实见：{_short_zh(found)}"
        return Outcome(self.describe(), not problems, detail, self.at, self.describe_zh(ev.mark_names), detail_zh)


@dataclass(frozen=True)
class ExpectNoIncident:
    """No incident of these conditions (fnmatch patterns), e.g. no suspected fire from one kitchen."""

    conditions: tuple[str, ...] = ("*",)
    device: str = "*"
    kind: str = "*"
    at: str = "end"
    text: str = ""  # its Chinese sentence, when the generated one would not say it well

    def describe(self) -> str:
        of = f" of {self.device}" if self.device != "*" else (f" of kind {self.kind}" if self.kind != "*" else "")
        return f"no incident {' / '.join(self.conditions)}{of}"

    def describe_zh(self, marks: Mapping[str, str] | None = None) -> str:
        if self.text:
            return self.text
        of = device_zh(self.device) if self.device != "*" else (KIND_ZH.get(self.kind, self.kind) if self.kind != "*" else "")
        if self.conditions == ("*",):
            return f"{of}不产生任何警情"
        return f"{of}不产生{'、'.join(condition_zh(c) for c in self.conditions)}"

    def check(self, ev: Evidence) -> Outcome:
        found = [i for c in self.conditions for i in ev.matching(c, self.device, self.kind)]
        return Outcome(self.describe(), not found, f"found {len(found)}: {_short(found)}" if found else "none", self.at,
                       self.describe_zh(ev.mark_names), f"出现 {len(found)} 起：{_short_zh(found)}" if found else "无")


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

    def describe_zh(self, marks: Mapping[str, str] | None = None) -> str:
        if self.reason == "*":
            return "没有任何消息被拒收" if self.count == 0 else f"被拒收并留存的消息{self._how_many_zh()}"
        return f"「{REASON_ZH.get(self.reason, self.reason)}」被拒收并留存{self._how_many_zh()}"

    def _how_many_zh(self) -> str:
        return f"恰好 {self.count} 条" if self.count is not None else f"至少 {self.at_least} 条"

    def check(self, ev: Evidence) -> Outcome:
        kept = {r: n for r, n in ev.dead_letters.items() if fnmatch.fnmatchcase(r, self.reason)}
        n = sum(kept.values())
        met = n == self.count if self.count is not None else n >= self.at_least
        which = "，".join(f"{REASON_ZH.get(r, r)} {c} 条" for r, c in kept.items())
        return Outcome(self.describe(), met, f"{n} kept ({', '.join(f'{r} {c}' for r, c in kept.items()) or 'none'})",
                       self.at, self.describe_zh(), f"留存 {n} 条（{which}）" if which else f"留存 {n} 条")


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

    def describe_zh(self, marks: Mapping[str, str] | None = None) -> str:
        upper = f"、不超过 {self.at_most:g}" if self.at_most is not None else ""
        return f"接入计数「{STAT_ZH.get(self.name, self.name)}」至少 {self.at_least:g}{upper}"

    def check(self, ev: Evidence) -> Outcome:
        value: Any = ev.stats
        for part in self.name.split("."):
            value = value.get(part, 0) if isinstance(value, dict) else 0
        n = float(value or 0)
        met = n >= self.at_least and (self.at_most is None or n <= self.at_most)
        return Outcome(self.describe(), met, f"{self.name} = {n:g}", self.at, self.describe_zh(),
                       f"{STAT_ZH.get(self.name, self.name)}：{n:g}")


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

    def describe_zh(self, marks: Mapping[str, str] | None = None) -> str:
        if self.health:
            what = f"显示{HEALTH_ZH.get(self.health, self.health)}"
        else:
            what = f"最后一条消息为「{MESSAGE_ZH.get(self.last_type or '', self.last_type)}」"
        if self.device != "*" and not _WILD.search(self.device):
            return f"{device_zh(self.device)}{what}"
        of = device_zh(self.device) if self.device != "*" else (KIND_ZH.get(self.kind, self.kind) if self.kind != "*"
                                                                  else "设备")
        return f"{'场景中全部' if self.every else f'至少 {self.at_least} 台'}{of}{what}"

    def check(self, ev: Evidence) -> Outcome:
        pool = [d for d in ev.devices
                if fnmatch.fnmatchcase(d["kind"], self.kind) and fnmatch.fnmatchcase(d["device_id"], self.device)]
        ok = [d for d in pool if (self.health is None or self.health in d["health"])
              and (self.last_type is None or d.get("last_type") == self.last_type)]
        met = (bool(pool) and len(ok) == len(pool)) if self.every else len(ok) >= self.at_least
        missing = [d["device_id"] for d in pool if d not in ok][:5]
        listed = missing and self.every
        return Outcome(self.describe(), met, f"{len(ok)} of {len(pool)}" + (f" (not: {', '.join(missing)}…)"
                                                                               if listed else ""), self.at,
                       self.describe_zh(), f"{len(pool)} 台中 {len(ok)} 台符合" + (f"（不符：{'、'.join(missing)}…）"
                                                                               if listed else ""))


Expectation = ExpectIncident | ExpectNoIncident | ExpectDeadLetters | ExpectStat | ExpectDevices
