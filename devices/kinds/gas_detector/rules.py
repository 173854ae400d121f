"""Rules for combustible-gas detectors (可燃气体探测器, GB 15322) in old estates' kitchens.

A leak is a fire and an explosion waiting for a spark: the detector's own alarm is a ``gas_leak``
incident at once, HIGH at the low set point and CRITICAL at the high one (the same incident,
raised). The service also reads the concentration in every heartbeat against its own set points
(``low_alarm_lel_pct``, ``high_alarm_lel_pct``, per building or device in the thresholds file):
a detector whose set point drifted, or whose alarm event was lost on the way, still raises the
leak ("100-1=0").

The valve is what makes a kitchen safe before anybody arrives. After an alarm the detector's
shut-off valve must report ``closed`` within ``valve_feedback_s``; a valve that reports
``failed``, or says nothing in time, is its own CRITICAL incident (``valve_not_closed``): the gas
still flows and someone must shut it by hand at the meter. A valve fitted to no detector
(``valve: none`` in the heartbeat) is not waited for.

A detector that stopped reporting watches no kitchen: it is offline (``GasDetectorOffline``,
the shared dead-man timer of ``alerts/rules/silence.py``); one that reports a fault cannot
measure: a maintenance task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from alerts.incidents import Severity, Signal
from alerts.rules.base import Rule, RuleContext, threshold_span
from alerts.rules.silence import DeadMan
from devices.kinds.gas_detector import contract as gd
from devices.reading import Reading

KIND = "gas_detector"
_LEVEL_ZH = {"low": "低限", "high": "高限"}


class GasLeak(Rule):
    """Gas over a set point, by the detector's alarm or by the service's reading of its heartbeat: a leak."""

    kinds = frozenset({KIND})
    messages = (gd.GasAlarm, gd.Heartbeat)
    THRESHOLDS = {KIND: {"low_alarm_lel_pct": 20.0, "high_alarm_lel_pct": 50.0}}

    def quiet(self, readings: Sequence[Reading], ctx: RuleContext) -> npt.NDArray[np.bool_] | None:
        """Heartbeats reading below both set points of every detector (an alarm is never quiet)."""
        if not issubclass(type(readings[0].message), gd.Heartbeat):
            return None
        low, high = threshold_span(ctx, KIND, "low_alarm_lel_pct"), threshold_span(ctx, KIND, "high_alarm_lel_pct")
        if low is None or high is None:
            return None
        lel = np.fromiter((r.message.lel_pct for r in readings), np.float64, len(readings))
        return lel < min(low[0], high[0])

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, dev = reading.message, reading.device_id
        if not isinstance(msg, gd.GasAlarm | gd.Heartbeat):
            return []
        low = ctx.threshold(KIND, "low_alarm_lel_pct", dev)
        high = ctx.threshold(KIND, "high_alarm_lel_pct", dev)
        level = "high" if msg.lel_pct >= high else "low" if msg.lel_pct >= low else None
        if isinstance(msg, gd.GasAlarm) and (level is None or msg.level == "high"):
            level = msg.level  # the detector's own set point decides when it says so
        if level is None:
            return []
        by = "探测器报警" if isinstance(msg, gd.GasAlarm) else f"心跳读数超过{_LEVEL_ZH[level]}设定值（{low:g}/{high:g}%LEL）"
        critical = level == "high"
        return [Signal(dev, KIND, "gas_leak", "fire", Severity.CRITICAL if critical else Severity.HIGH,
                       "可燃气体泄漏（高限）" if critical else "可燃气体泄漏", reading.ts_ms,
                       f"可燃气体探测器 {dev} {by}：浓度 {msg.lel_pct:g}%LEL（{_LEVEL_ZH[level]}）。"
                       "请立即联系住户开窗通风、严禁开关电器和明火，确认燃气切断阀已关闭")]


class ValveNotClosed(Rule):
    """After an alarm the shut-off valve must report closed in time; a failed or silent valve means gas still flows."""

    kinds = frozenset({KIND})
    messages = (gd.GasAlarm, gd.GasCleared, gd.Valve, gd.Heartbeat)
    THRESHOLDS = {KIND: {"valve_feedback_s": 30.0}}
    # A wait for a valve is written right after the batch that started or ended it (alerts/rules/base.py), not at
    # the next checkpoint: a crash in between must not forget a kitchen whose gas may still flow.
    persist_at_once = True

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[int, int]] = {}  # detector → (engine-time deadline, the alarm's device time)
        self._shut: set[str] = set()  # detectors whose valve reported closed (until the gas clears or it opens)
        self._no_valve: set[str] = set()  # detectors whose heartbeat says no valve is fitted

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        before = (len(self._waiting), len(self._shut), len(self._no_valve))
        said = self._read(reading, ctx, now_ms)
        if (len(self._waiting), len(self._shut), len(self._no_valve)) != before:
            self.changed = True
        return said

    def _read(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, dev = reading.message, reading.device_id
        if isinstance(msg, gd.Heartbeat):
            self._no_valve.discard(dev)
            if msg.valve == "none":
                self._no_valve.add(dev)
            self._valve_is(dev, msg.valve)
            return []
        if isinstance(msg, gd.GasAlarm):
            # A second alarm of the same leak (low, then high) waits for nothing the valve already did.
            if dev not in self._no_valve and dev not in self._shut and dev not in self._waiting:
                wait_ms = int(ctx.threshold(KIND, "valve_feedback_s", dev) * 1000)
                self._waiting[dev] = (now_ms + wait_ms, reading.ts_ms)
            return []
        if isinstance(msg, gd.GasCleared):
            self._waiting.pop(dev, None)
            self._shut.discard(dev)  # the next leak needs the valve to answer again
            return []
        if isinstance(msg, gd.Valve):
            self._valve_is(dev, msg.state)
            if msg.state == "failed":
                return [self._signal(dev, reading.ts_ms, "切断阀反馈：关闭失败")]
        return []

    def _valve_is(self, dev: str, state: str) -> None:
        if state == "closed":
            self._waiting.pop(dev, None)
            self._shut.add(dev)
        elif state in ("open", "none"):
            self._shut.discard(dev)
            if state == "none":
                self._waiting.pop(dev, None)
        else:  # failed: said at once by on_reading, not waited for again
            self._waiting.pop(dev, None)
            self._shut.discard(dev)

    def on_tick(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        late = [(dev, at) for dev, (deadline, at) in self._waiting.items() if deadline <= now_ms]
        for dev, _ in late:
            del self._waiting[dev]
        if late:
            self.changed = True
        return [self._signal(dev, at, f"报警后 {ctx.threshold(KIND, 'valve_feedback_s', dev):g} 秒内切断阀未反馈关闭")
                for dev, at in late]

    @staticmethod
    def _signal(dev: str, at_ms: int, why: str) -> Signal:
        return Signal(dev, KIND, "valve_not_closed", "fire", Severity.CRITICAL, "燃气切断阀未关闭", at_ms,
                      f"可燃气体探测器 {dev} 报警，{why}，燃气可能仍在泄漏。请立即派人关闭燃气表前总阀，"
                      "疏散住户，严禁明火和开关电器")

    def snapshot(self) -> dict[str, Any] | None:
        if not self._waiting and not self._shut and not self._no_valve:
            return None
        return {"waiting": {d: list(w) for d, w in self._waiting.items()}, "shut": sorted(self._shut),
                "no_valve": sorted(self._no_valve)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._waiting = {d: (int(w[0]), int(w[1])) for d, w in state.get("waiting", {}).items()}
        self._shut = set(state.get("shut", ()))
        self._no_valve = set(state.get("no_valve", ()))


class DetectorFault(Rule):
    """A detector that reports a fault cannot measure: a kitchen unwatched until it is repaired."""

    kinds = frozenset({KIND})
    messages = (gd.Fault,)

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg = reading.message
        if not isinstance(msg, gd.Fault):
            return []
        detail = f"（{msg.detail}）" if msg.detail else ""
        return [Signal(reading.device_id, KIND, "fault", "maintenance", Severity.WARNING, "可燃气体探测器故障",
                       reading.ts_ms, f"可燃气体探测器 {reading.device_id} 报告故障 {msg.code}{detail}，"
                       "故障期间无法发现燃气泄漏，请物业或燃气公司上门检修（传感器寿命约 5 年）")]


class GasDetectorOffline(DeadMan):
    """A gas detector silent for several heartbeats: its kitchen's leaks go unseen (storms grouped, silence.py)."""

    KIND = KIND
    HEARTBEAT_MS = (gd.KIND.heartbeat_s or 1800) * 1000
    THRESHOLDS = {KIND: {"offline_after_heartbeats": 3.0, "storm_count": 10.0, "storm_window_s": 300.0}}
    NOUN = "可燃气体探测器"
    ADVICE = "离线期间厨房燃气泄漏无法发现，切断阀也不会联动，请检查探测器供电与网络"


RULES: tuple[type[Rule], ...] = (GasLeak, ValveNotClosed, DetectorFault, GasDetectorOffline)
