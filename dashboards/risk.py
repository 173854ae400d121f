"""A building's risk score (数字化风险画像) as a pure function of plain numbers.

The score is 0-100, the sum of named factors, each capped so that no single kind of trouble
can hide every other: what is burning now weighs most, then what should already have been
put right (overdue rectifications, silent or tampered detectors), then what keeps coming back
(charging anomalies, alarms, false alarms that teach residents to ignore the sound), then what
the building is (a high-rise, elderly people living alone). Every factor says why in Chinese,
so the number on the screen can be argued with.

No I/O and no clock: the caller counts, this module weighs (``dashboards/building_profile.py``
does the counting for the API).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RiskInputs:
    """What is known about one building, counted by the caller. Every count is >= 0."""

    units: int = 0  # households the building has (floors × units per floor)
    high_rise: bool = False
    elderly_alone: int = 0  # households of elderly people living alone
    devices: int = 0  # active registered devices of every kind
    covered_units: int = 0  # households with a smoke detector registered in them
    offline: int = 0  # devices silent past their heartbeat, or disconnected
    never_seen: int = 0  # registered, never heard from
    low_battery: int = 0
    tampered: int = 0
    open_critical: int = 0  # active incidents at critical severity
    open_other: int = 0  # active incidents at any lower severity (hazards excluded)
    open_hazards: int = 0  # hazard reports awaiting rectification, not yet overdue
    overdue_rectifications: int = 0  # hazard reports past their rectification deadline
    alarms: int = 0  # fire alarms in the window, false ones included
    false_alarms: int = 0  # of those, marked false alarm
    charging_anomalies: int = 0  # charging-station incidents in the window


@dataclass(frozen=True, slots=True)
class Factor:
    code: str
    label_zh: str
    points: int
    detail_zh: str


@dataclass(frozen=True, slots=True)
class RiskScore:
    score: int  # 0-100
    level: str  # low, medium, high, severe
    level_zh: str
    factors: tuple[Factor, ...]  # those that add points, heaviest first


LEVELS = ((75, "severe", "极高"), (50, "high", "高"), (25, "medium", "中"), (0, "low", "低"))
MAX_SCORE = 100
FALSE_ALARM_MIN_ALARMS = 3  # fewer alarms than this say nothing about a false-alarm habit


def _capped(per: int, n: int, cap: int) -> int:
    return min(cap, per * max(0, n))


def _share_points(part: int, whole: int, weight: int) -> int:
    if whole <= 0 or part <= 0:
        return 0
    return round(weight * min(part, whole) / whole)


def risk_factors(x: RiskInputs) -> list[Factor]:
    """Every factor that applies, with its points (before the 100 cap), heaviest first."""
    out: list[Factor] = []

    def add(code: str, label: str, points: int, detail: str) -> None:
        if points > 0:
            out.append(Factor(code, label, points, detail))

    add("critical_incident", "紧急警情未结", _capped(40, x.open_critical, 40), f"{x.open_critical} 起紧急警情正在处置")
    add("open_incidents", "其他未结警情", _capped(5, x.open_other, 15), f"{x.open_other} 起未结警情")
    add("overdue_rectification", "整改超期", _capped(8, x.overdue_rectifications, 24),
        f"{x.overdue_rectifications} 项隐患已过整改期限")
    add("open_hazards", "隐患待整改", _capped(3, x.open_hazards, 9), f"{x.open_hazards} 项隐患在整改期限内")
    uncovered = x.units - min(x.covered_units, x.units)
    add("detector_coverage", "烟感覆盖不足", _share_points(uncovered, x.units, 15), f"{x.units} 户中 {uncovered} 户未装烟感")
    silent = min(x.devices, x.offline + x.never_seen)
    add("devices_silent", "设备离线或未上线", _share_points(silent, x.devices, 20),
        f"{x.devices} 台设备中 {x.offline} 台离线、{x.never_seen} 台从未上线")
    add("tampered", "设备被拆", _capped(3, x.tampered, 9), f"{x.tampered} 台烟感被拆离底座")
    add("low_battery", "低电量", _capped(1, x.low_battery, 8), f"{x.low_battery} 台设备电量低于 20%")
    add("charging_anomalies", "充电异常", _capped(4, x.charging_anomalies, 12), f"近 30 天 {x.charging_anomalies} 起充电异常")
    real_alarms = max(0, x.alarms - x.false_alarms)
    add("alarms", "火警报警", _capped(2, real_alarms, 8), f"近 30 天 {real_alarms} 起非误报的火警")
    if x.alarms >= FALSE_ALARM_MIN_ALARMS and 2 * min(x.false_alarms, x.alarms) > x.alarms:
        add("false_alarms", "误报频繁", 5,
            f"近 30 天 {x.alarms} 起报警中 {x.false_alarms} 起误报：居民可能对警报麻木")
    add("high_rise", "高层住宅", 5 if x.high_rise else 0, "十层及以上，疏散和扑救更难")
    add("elderly_alone", "独居老人", _capped(1, x.elderly_alone, 5), f"{x.elderly_alone} 户独居老人")
    return sorted(out, key=lambda f: (-f.points, f.code))


def risk_score(x: RiskInputs) -> RiskScore:
    factors = risk_factors(x)
    score = min(MAX_SCORE, sum(f.points for f in factors))
    level, level_zh = next((name, zh) for floor, name, zh in LEVELS if score >= floor)
    return RiskScore(score, level, level_zh, tuple(factors))
