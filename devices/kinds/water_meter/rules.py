"""Rules for smart water meters in the homes of elderly people living alone.

Almost no water over twelve hours (no tea, no toilet flushed) is a quiet sign that somebody
may have fallen or be ill: a welfare check. The judgement waits until the meter's readings
cover the whole window, so a meter just installed or a service just started raises nothing
on half a window. A meter that stopped reporting cannot tell of a quiet home at all: it is
offline (``MeterOffline``, the shared dead-man timer of ``silence.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from alerts.incidents import Severity, Signal
from alerts.rules.base import Rule, RuleContext
from alerts.rules.silence import DeadMan
from devices.kinds.water_meter import contract as wm
from devices.reading import Reading

KIND = "water_meter"
COVERED = 0.95  # of the window; intervals jitter by seconds (12 × 3599 s is still a covered half day)


class _Usage:
    """One meter's recent intervals: [start, end) in device ms and the litres used in each."""

    def __init__(self) -> None:
        self.start_ms = np.empty(0, dtype=np.int64)
        self.end_ms = np.empty(0, dtype=np.int64)
        self.litres = np.empty(0)

    def add(self, end_ms: int, interval_s: int, litres: float, window_ms: int) -> None:
        keep = self.end_ms > max(end_ms, int(self.end_ms.max(initial=end_ms))) - window_ms
        self.start_ms = np.append(self.start_ms[keep], end_ms - interval_s * 1000)
        self.end_ms = np.append(self.end_ms[keep], end_ms)
        self.litres = np.append(self.litres[keep], litres)

    def over(self, window_ms: int) -> tuple[float, float]:
        """(litres used, fraction of the window covered) over the window ending at the latest reading.

        An interval reaching back past the window's start counts in proportion to its overlap.
        """
        end = int(self.end_ms.max())
        overlap = np.clip(self.end_ms, end - window_ms, end) - np.clip(self.start_ms, end - window_ms, end)
        length = self.end_ms - self.start_ms
        share = np.divide(overlap, length, out=np.zeros(len(overlap)), where=length > 0)
        return float((self.litres * share).sum()), float(overlap.sum()) / window_ms

    def dump(self) -> list[list[Any]]:
        return [self.start_ms.tolist(), self.end_ms.tolist(), self.litres.tolist()]

    @classmethod
    def load(cls, data: list[list[Any]]) -> _Usage:
        usage = cls()
        usage.start_ms = np.array(data[0], dtype=np.int64)
        usage.end_ms = np.array(data[1], dtype=np.int64)
        usage.litres = np.array(data[2], dtype=np.float64)
        return usage


class LowWaterUse(Rule):
    """Less than a few litres in twelve hours, over a fully covered window: a welfare check."""

    kinds = frozenset({KIND})
    messages = (wm.Reading,)
    THRESHOLDS = {KIND: {"low_use_window_h": 12.0, "low_use_litres": 5.0}}

    def __init__(self) -> None:
        self._meters: dict[str, _Usage] = {}

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, dev = reading.message, reading.device_id
        if not isinstance(msg, wm.Reading):
            return []
        hours = ctx.threshold(KIND, "low_use_window_h", dev)
        window_ms = int(hours * 3_600_000)
        usage = self._meters.setdefault(dev, _Usage())
        usage.add(reading.ts_ms, msg.interval_s, msg.interval_l, window_ms)
        litres, covered = usage.over(window_ms)
        limit = ctx.threshold(KIND, "low_use_litres", dev)
        if covered < COVERED or litres >= limit:
            return []
        return [Signal(dev, KIND, "low_water_use", "welfare", Severity.HIGH, "独居老人家中用水异常", reading.ts_ms,
                       f"独居老人家中{hours:g}小时几乎未用水，请上门查看（水表 {dev}：近 {hours:g} 小时用水 "
                       f"{litres:.1f} 升，低于 {limit:g} 升）")]

    def snapshot(self) -> dict[str, Any] | None:
        return {"meters": {d: u.dump() for d, u in self._meters.items()}} if self._meters else None

    def restore(self, state: Mapping[str, Any]) -> None:
        self._meters = {d: _Usage.load(u) for d, u in state.get("meters", {}).items()}


class Leak(Rule):
    """Water running for a long time: a tap left open or a burst pipe."""

    kinds = frozenset({KIND})
    messages = (wm.Leak,)

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg = reading.message
        if not isinstance(msg, wm.Leak):
            return []
        return [Signal(reading.device_id, KIND, "leak", "maintenance", Severity.WARNING, "疑似漏水", reading.ts_ms,
                       f"水表 {reading.device_id} 持续出水 {msg.duration_s / 60:.0f} 分钟（{msg.flow_l_per_min:.1f} 升/分钟），"
                       "可能是水龙头未关或水管破裂，请联系住户或物业查看")]


class MeterOffline(DeadMan):
    """A water meter silent for several hourly readings: the welfare check on water use is blind (storms grouped)."""

    KIND = KIND
    HEARTBEAT_MS = (wm.KIND.heartbeat_s or 3600) * 1000
    THRESHOLDS = {KIND: {"offline_after_heartbeats": 3.0, "storm_count": 20.0, "storm_window_s": 300.0}}
    NOUN = "智能水表"
    ADVICE = "离线期间无法发现独居老人家中长时间不用水，请联系住户并检查水表电池与网络"


RULES: tuple[type[Rule], ...] = (LowWaterUse, Leak, MeterOffline)
