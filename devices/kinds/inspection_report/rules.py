"""Rules for hazard reports from people (随手拍): each one a rectification task with a deadline.

A report becomes an incident of its building (or of its reporter, when it names none) per
category, with a deadline by category for whoever must put it right: a blocked fire lane
within hours, a flying wire within a day, the rest within three. The same hazard coming back
to the same building again and again is its own, more serious finding (清单化整改: the
list has to shrink, not repeat).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

from alerts.incidents import Severity, Signal
from alerts.rules.base import Rule, RuleContext
from devices.kinds.inspection_report import contract as ir
from devices.reading import Reading

KIND = "inspection_report"
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
CATEGORIES: tuple[str, ...] = get_args(ir.HazardCategory)
CATEGORY_ZH = {
    "corridor_clutter": "楼道堆物", "flying_wire_charging": "飞线充电", "fire_lane_blocked": "消防通道占用",
    "ebike_indoors": "电动车进楼入户", "extinguisher_missing": "灭火器缺失", "extinguisher_expired": "灭火器过期",
    "manhole_damaged": "井盖破损", "other": "其他隐患",
}
SEVERITY = {
    "fire_lane_blocked": Severity.HIGH, "flying_wire_charging": Severity.HIGH, "ebike_indoors": Severity.WARNING,
    "corridor_clutter": Severity.WARNING, "extinguisher_missing": Severity.WARNING,
    "extinguisher_expired": Severity.WARNING, "manhole_damaged": Severity.WARNING, "other": Severity.INFO,
}
DEADLINE_H = {c: {"fire_lane_blocked": 2.0, "flying_wire_charging": 24.0}.get(c, 72.0) for c in CATEGORIES}
_ZH_DIGITS = "零一二三四五六七八九"


def zh_number(n: int) -> str:
    """0-99 in Chinese numerals (三十, 十五, 二十一); larger numbers in digits."""
    if not 0 <= n < 100:
        return str(n)
    tens, ones = divmod(n, 10)
    if tens == 0:
        return _ZH_DIGITS[ones]
    return f"{_ZH_DIGITS[tens] if tens > 1 else ''}十{_ZH_DIGITS[ones] if ones else ''}"


class HazardReported(Rule):
    """Each report: a rectification task for its building, with the category's deadline written in."""

    kinds = frozenset({KIND})
    messages = (ir.HazardReport,)
    THRESHOLDS = {KIND: {f"deadline_h_{c}": h for c, h in DEADLINE_H.items()}}

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, dev = reading.message, reading.device_id
        if not isinstance(msg, ir.HazardReport):
            return []
        reported_ms = min(reading.ts_ms, now_ms)  # a phone clock ahead must not push the deadline out
        hours = ctx.threshold(KIND, f"deadline_h_{msg.category}", dev)
        deadline = datetime.fromtimestamp(reported_ms / 1000, tz=UTC).astimezone(SHANGHAI) + timedelta(hours=hours)
        where = "，".join(x for x in (msg.community, msg.building, msg.location) if x) or "未注明位置"
        parts = [f"{CATEGORY_ZH[msg.category]}：{where}"]
        if msg.note:
            parts.append(f"说明：{msg.note}")
        parts.append(f"照片 {len(msg.photos)} 张")
        parts.append(f"上报人 {msg.reporter or dev}，编号 {msg.report_id}")
        parts.append(f"整改期限 {deadline.isoformat(timespec='minutes')}（{hours:g} 小时内）")
        scope, members = (f"building:{msg.building}", (dev,)) if msg.building else ("", ())
        return [Signal(dev, KIND, f"hazard:{msg.category}", "hazard", SEVERITY[msg.category],
                       f"隐患上报：{CATEGORY_ZH[msg.category]}", reading.ts_ms, "；".join(parts),
                       scope=scope, members=members)]


class RecurringHazard(Rule):
    """The same hazard in the same building again and again within a month: rectification is not working."""

    kinds = frozenset({KIND})
    messages = (ir.HazardReport,)
    THRESHOLDS = {KIND: {"recur_count": 3.0, "recur_window_d": 30.0}}

    def __init__(self) -> None:
        self._history: dict[tuple[str, str], deque[tuple[int, str]]] = {}  # (building, category) → (ms, report id)

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, dev = reading.message, reading.device_id
        if not isinstance(msg, ir.HazardReport) or not msg.building:
            return []
        days = ctx.threshold(KIND, "recur_window_d", dev)
        reported_ms = min(reading.ts_ms, now_ms)
        history = self._history.setdefault((msg.building, msg.category), deque())
        while history and history[0][0] <= reported_ms - days * 86_400_000:
            history.popleft()
        if any(report_id == msg.report_id for _, report_id in history):
            return []  # the app sent the same report again: one hazard, counted once
        history.append((reported_ms, msg.report_id))
        n = len(history)
        if n < ctx.threshold(KIND, "recur_count", dev):
            return []
        name = CATEGORY_ZH[msg.category]
        return [Signal(dev, KIND, f"recurring_hazard:{msg.category}", "hazard", Severity.HIGH, f"隐患反复出现：{name}",
                       reading.ts_ms, f"楼栋 {msg.building} {zh_number(round(days))}天内第{zh_number(n)}次上报{name}，"
                       "整改未见效，请居民区与物业约谈责任方并复查",
                       scope=f"building:{msg.building}", members=(dev,))]

    def snapshot(self) -> dict[str, Any] | None:
        if not self._history:
            return None
        return {"history": [[building, category, [list(h) for h in history]]
                            for (building, category), history in self._history.items()]}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._history = {(b, c): deque((int(ms), str(rid)) for ms, rid in history)
                         for b, c, history in state.get("history", [])}


RULES: tuple[type[Rule], ...] = (HazardReported, RecurringHazard)
