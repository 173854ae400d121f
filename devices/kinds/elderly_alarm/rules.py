"""Rules for one-touch alarms of elderly people living alone (一键通).

A press is critical at once. A cancel soon after lowers it, but never closes it: somebody
still calls back, because a person who pressed and then cancelled may not be fine. A fall
is critical, and so is silence in the other direction: a day without any sign of activity
calls for somebody at the door. A one-touch alarm that stopped reporting altogether is
offline (``AlarmOffline``, the shared dead-man timer with its storm grouping): a press
nobody hears. While it is offline, its lack of activity says nothing about the person, so a
network outage never turns into a thousand welfare checks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from alerts.incidents import Severity, Signal
from alerts.rules.base import Rule, RuleContext, at_least_every
from alerts.rules.silence import DeadMan, SilenceWatch
from devices.kinds.elderly_alarm import contract as ea
from devices.messages import Offline
from devices.reading import Reading

KIND = "elderly_alarm"
HEARTBEAT_MS = (ea.KIND.heartbeat_s or 3600) * 1000


class EmergencyPress(Rule):
    """A press needs a human call-back within about a minute: critical at once; a quick cancel lowers it, says so."""

    kinds = frozenset({KIND})
    messages = (ea.Press, ea.Cancel)
    THRESHOLDS = {KIND: {"cancel_grace_s": 60.0}}

    def __init__(self) -> None:
        self._pressed_ms: dict[str, int] = {}  # device → its last press not yet cancelled (device clock)

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, dev = reading.message, reading.device_id
        if isinstance(msg, ea.Press):
            self._pressed_ms[dev] = reading.ts_ms
            return [Signal(dev, KIND, "emergency_press", "welfare", Severity.CRITICAL, "一键通紧急呼叫",
                           reading.ts_ms, f"老人按下一键通 {dev}，请立即回拨并上门")]
        if not isinstance(msg, ea.Cancel) or dev not in self._pressed_ms:
            return []
        # Press and cancel come from the same device clock, so their difference is honest.
        elapsed_ms = reading.ts_ms - self._pressed_ms.pop(dev)
        if not 0 <= elapsed_ms <= ctx.threshold(KIND, "cancel_grace_s", dev) * 1000:
            return []  # a late cancel changes nothing: the press stands until a person closes it
        return [Signal(dev, KIND, "emergency_press", "welfare", Severity.WARNING, "一键通呼叫已取消",
                       reading.ts_ms, f"老人在 {round(elapsed_ms / 1000)} 秒内取消，请仍回电确认（一键通 {dev}）",
                       downgrade=True)]

    def snapshot(self) -> dict[str, Any] | None:
        return {"pressed_ms": dict(self._pressed_ms)} if self._pressed_ms else None

    def restore(self, state: Mapping[str, Any]) -> None:
        self._pressed_ms = {d: int(t) for d, t in state.get("pressed_ms", {}).items()}


class Fall(Rule):
    """A wearable's fall detection: an elderly person alone on the floor cannot wait."""

    kinds = frozenset({KIND})
    messages = (ea.Fall,)

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg = reading.message
        if not isinstance(msg, ea.Fall):
            return []
        confidence = f"（置信度 {msg.confidence:.0%}）" if msg.confidence is not None else ""
        return [Signal(reading.device_id, KIND, "fall", "welfare", Severity.CRITICAL, "老人跌倒",
                       reading.ts_ms, f"一键通 {reading.device_id} 检测到跌倒{confidence}，请立即回拨并上门，通知家属")]


class Inactivity(Rule):
    """No door, water, motion or button activity for a day: a welfare check. Heartbeats only say the device lives.

    A device silent altogether (no heartbeat either, past its offline limit) is not judged:
    that is ``AlarmOffline``'s to raise, and an outage must not look like a street of
    elderly people who stopped moving.
    """

    kinds = frozenset({KIND})
    THRESHOLDS = {KIND: {"inactivity_h": 24.0}}

    def __init__(self) -> None:
        self._watch = SilenceWatch()  # activity
        self._alive = SilenceWatch()  # any message: the device itself is heard

    notes_only = True  # the engine hands a batch's readings to ``note`` at once (alerts/rules/hearing.py)

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        # the engine's clock: a wrong device clock must not hide a day
        if isinstance(reading.message, ea.Activity):
            self._watch.seen(reading.device_id, now_ms)
        if not isinstance(reading.message, Offline):
            self._alive.seen(reading.device_id, now_ms)
        return []

    def note(self, readings: Sequence[Reading], ctx: RuleContext, now_ms: int) -> None:
        self._watch.seen_all([r.device_id for r in readings if isinstance(r.message, ea.Activity)], now_ms)
        self._alive.seen_all([r.device_id for r in readings if not isinstance(r.message, Offline)], now_ms)

    def on_tick(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        population = lambda: ctx.devices(KIND)  # noqa: E731 - read once per refresh by each watch
        self._watch.follow(population, lambda d: ctx.threshold(KIND, "inactivity_h", d) * 3_600_000, now_ms)
        self._alive.follow(population, lambda d: ctx.threshold(KIND, "offline_after_heartbeats", d) * HEARTBEAT_MS,
                           now_ms)
        out = []
        for i in self._watch.overdue(now_ms):
            dev = self._watch.ids[i]
            alive_ms = self._alive.last_of(dev)
            offline_ms = ctx.threshold(KIND, "offline_after_heartbeats", dev) * HEARTBEAT_MS
            if alive_ms is None or now_ms - alive_ms > offline_ms:
                self._watch.unraise(i)  # offline: ask again once it is heard
                continue
            hours = (now_ms - int(self._watch.last_ms[i])) / 3_600_000
            since = "自监测开始已" if self._watch.never_seen[i] else "已"
            out.append(Signal(dev, KIND, "no_activity", "welfare", Severity.HIGH, "独居老人长时间无活动", now_ms,
                              f"一键通 {dev} {since} {hours:.0f} 小时未检测到开门、用水或走动"
                              f"（阈值 {ctx.threshold(KIND, 'inactivity_h', dev):g} 小时），请电话联系并上门查看"))
        return out

    def snapshot(self) -> dict[str, Any] | None:
        watch, alive = self._watch.snapshot(), self._alive.snapshot()
        return {"activity": watch, "alive": alive} if watch or alive else None

    def restore(self, state: Mapping[str, Any]) -> None:
        if state.get("activity"):
            self._watch.restore(state["activity"])
        if state.get("alive"):
            self._alive.restore(state["alive"])


class AlarmOffline(DeadMan):
    """A one-touch alarm silent for several heartbeats: a press nobody would hear (storms grouped, silence.py)."""

    KIND = KIND
    HEARTBEAT_MS = HEARTBEAT_MS
    THRESHOLDS = {KIND: {"offline_after_heartbeats": 3.0, "storm_count": 20.0, "storm_window_s": 300.0}}
    NOUN = "一键通"
    ADVICE = "老人按下呼叫将无人知晓，请联系老人或家属并上门检查设备（电池、电源、网络）"
    OFFLINE_SEVERITY = Severity.HIGH


class LowBattery(Rule):
    """A flat one-touch alarm is a press nobody hears."""

    kinds = frozenset({KIND})
    messages = (ea.LowBattery, ea.Heartbeat)
    THRESHOLDS = {KIND: {"low_battery_pct": 20.0}}

    def quiet(self, readings: Sequence[Reading], ctx: RuleContext) -> npt.NDArray[np.bool_] | None:
        """Heartbeats charged at or above every device's low-battery threshold."""
        if not issubclass(type(readings[0].message), ea.Heartbeat):
            return None
        return at_least_every(readings, ctx, KIND, "low_battery_pct", "battery_pct")

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, dev = reading.message, reading.device_id
        if isinstance(msg, ea.LowBattery) or isinstance(msg, ea.Heartbeat) and msg.battery_pct < ctx.threshold(KIND, "low_battery_pct", dev):
            pct = msg.battery_pct
        else:
            return []
        return [Signal(reading.device_id, KIND, "low_battery", "maintenance", Severity.WARNING, "一键通电量低",
                       reading.ts_ms, f"一键通 {reading.device_id} 电量 {pct:.0f}%，请尽快上门更换电池或充电")]


RULES: tuple[type[Rule], ...] = (EmergencyPress, Fall, Inactivity, LowBattery, AlarmOffline)
