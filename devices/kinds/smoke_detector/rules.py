"""Rules for smoke detectors: what a detector's messages and its silence mean.

    rule                 raises               category     severity   scope
    SmokeAlarm           smoke_alarm          fire         HIGH       the detector
    SuspectedFire        suspected_fire       fire         CRITICAL   building:<id>, members = the alarming detectors
    DetectorMaintenance  fault                maintenance  WARNING    the detector
                         low_battery          maintenance  WARNING
                         tamper               maintenance  HIGH
                         self_test_failed     maintenance  WARNING
                         repeated_silencing   maintenance  WARNING
    AlarmFlapping        flapping             maintenance  WARNING    the detector
    DetectorSilence      offline              maintenance  WARNING    the detector
                         mass_offline         maintenance  HIGH       street:<id>, members = the silent detectors

A cleared alarm raises nothing and closes nothing: whether there was a fire is for a
person to verify (核查) before the incident closes. The clear is remembered only to see
a detector flapping between alarm and clear.

Suspected fire. Two *different* detectors alarming in the same building within
``correlation_window_s`` is enough: a kitchen's steam sets off one detector, not two
households' (the domain's "strong evidence of a real fire"). Adjacent floors (floor numbers
at most ``adjacent_floors`` apart, the same floor included, basement 1 directly below
floor 1) make it stronger still, smoke climbing a stairwell or a shaft, and the title and
detail say so; the severity is CRITICAL either way, because the building case alone
already warrants sending the micro fire station. Every further alarm in the window adds
its detector to the same building incident.

Clocks. Windows over what detectors report (correlation, flapping, silencing) run on the
detectors' own time (``reading.ts_ms``): an alarm buffered through a network gap is placed
when the smoke was there, not when it arrived. Silence runs on the engine's clock
(``now_ms``), because being silent is about now. Detector clocks are kept in line by
ingest (at most 5 minutes ahead); one that lags far behind correlates less, and the
per-detector alarm stays HIGH regardless.

Silence and storms. A detector silent for more than ``offline_after_heartbeats`` heartbeat
intervals is overdue. It is held for ``storm_window_s`` before its own ``offline`` signal
goes out: if in the meantime more than ``storm_count`` detectors of its street went
overdue within ``storm_window_s`` (a network or power outage), they all go into one
``mass_offline`` incident instead, and so do those that follow while the storm lasts.
Five minutes late on twelve hours of silence costs nothing; paging 45,000 times does.
A detector that reports again is online again; the storm incident says how many are back
and drops to a warning once all are, and a person closes it. The timer and the storm are
shared with the other kinds' offline rules (``alerts/rules/silence.py``).

State is bounded: per-device entries only for registered detectors, windows trimmed by
time, and what outlives its window swept once a minute. Every rule hands its state out as
plain data (``snapshot``) and takes it back after a restart (``restore``): a second
detector alarming a minute after a restart still makes a suspected fire.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from alerts.incidents import Severity, Signal
from alerts.rules.base import Place, Rule, RuleContext, at_least_every
from alerts.rules.silence import DeadMan
from alerts.rules.silence import duration_zh as _duration_zh
from devices.drill import DRILL_PREFIX, is_drill
from devices.kinds.smoke_detector import contract as sd
from devices.reading import Reading

KIND = sd.KIND.name
HEARTBEAT_MS = (sd.KIND.heartbeat_s or 0) * 1000
SWEEP_EVERY_MS = 60_000  # how often what outlived its window is dropped
LATE_MS = 10 * 60_000  # an event is kept this long past its window, for detectors whose messages arrive late
MAX_EVENTS_PER_DEVICE = 64  # a detector's window of silences or toggles never grows past this


def _threshold(ctx: RuleContext, name: str, device_id: str) -> float:
    return ctx.threshold(KIND, name, device_id)


def _floor_zh(floor: int | None) -> str:
    if floor is None:
        return ""
    return f"{floor}层" if floor > 0 else f"地下{-floor}层"


def _level(floor: int) -> int:
    """Floors stacked without a gap: there is no floor 0, so basement 1 is right below floor 1."""
    return floor if floor > 0 else floor + 1


def _maintenance(reading: Reading, condition: str, severity: Severity, title: str, detail: str) -> list[Signal]:
    return [Signal(reading.device_id, reading.kind, condition, "maintenance", severity, title, reading.ts_ms, detail)]


@dataclass(slots=True)
class _Recent:
    """One detector's recent event times, oldest first, trimmed to a window behind the newest (and to a bound)."""

    window_ms: int = 0
    at_ms: list[int] = field(default_factory=list)

    def add(self, ts_ms: int, window_ms: int) -> int:
        """Note an event; how many fall within the window now."""
        self.window_ms = window_ms
        bisect.insort(self.at_ms, ts_ms)  # late messages land in their place
        cut = bisect.bisect_left(self.at_ms, self.at_ms[-1] - window_ms)
        del self.at_ms[:max(cut, len(self.at_ms) - MAX_EVENTS_PER_DEVICE)]
        return len(self.at_ms)

    def stale(self, now_ms: int) -> bool:
        return not self.at_ms or now_ms - self.at_ms[-1] > self.window_ms + LATE_MS

    def dump(self) -> list[Any]:
        return [self.window_ms, list(self.at_ms)]

    @classmethod
    def load(cls, data: list[Any]) -> _Recent:
        return cls(int(data[0]), [int(t) for t in data[1]])


def _dump_recent(recent: dict[str, _Recent]) -> dict[str, list[Any]]:
    return {device: r.dump() for device, r in recent.items()}


def _load_recent(data: Mapping[str, list[Any]]) -> dict[str, _Recent]:
    return {device: _Recent.load(r) for device, r in data.items()}


class SmokeAlarm(Rule):
    """A detector sounding is a possible fire until a person says otherwise."""

    kinds = frozenset({KIND})
    messages = (sd.Alarm,)

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg = reading.message
        if not isinstance(msg, sd.Alarm):
            return []
        density = f"，烟雾浓度 {msg.smoke_density:g} dB/m" if msg.smoke_density is not None else ""
        return [Signal(reading.device_id, reading.kind, "smoke_alarm", "fire", Severity.HIGH, "烟感报警",
                       reading.ts_ms, f"探测器 {reading.device_id} 报警{density}")]


# -- suspected fire: more than one detector in a building -----------------------------------------------------------


_SPOTS_NAMED = 12  # the detail names the first alarms by floor and unit; the members name them all


@dataclass(frozen=True, slots=True)
class _Alarmed:
    ts_ms: int
    floor: int | None
    unit: str
    window_ms: int


class SuspectedFire(Rule):
    """A second detector alarming in the same building within the window: a fire until verified (module docstring)."""

    kinds = frozenset({KIND})
    messages = (sd.Alarm,)
    THRESHOLDS = {KIND: {"correlation_window_s": 180.0, "adjacent_floors": 1.0}}

    def __init__(self) -> None:
        self._alarms: dict[str, dict[str, _Alarmed]] = {}  # building → detector → its latest alarm
        self._next_sweep_ms = 0

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        if not isinstance(reading.message, sd.Alarm):
            return []
        device, ts = reading.device_id, reading.ts_ms
        place = ctx.place(device)
        if place is None or not place.building_id:
            return []  # not registered to a building: nothing to correlate with
        window_ms = int(_threshold(ctx, "correlation_window_s", device) * 1000)
        this = _Alarmed(ts, place.floor, place.unit, window_ms)
        # A drill's detectors correlate only with each other, never with the real ones beside them (devices/drill.py).
        alarms = self._alarms.setdefault(f"{DRILL_PREFIX}{place.building_id}" if is_drill(device) else place.building_id,
                                         {})
        if device not in alarms or ts >= alarms[device].ts_ms:
            alarms[device] = this
        together = {d: a for d, a in alarms.items() if d != device and abs(a.ts_ms - ts) <= window_ms}
        if not together:
            return []
        together[device] = this
        adjacent = self._adjacent(together.values(), _threshold(ctx, "adjacent_floors", device))
        return [Signal(device, reading.kind, "suspected_fire", "fire", Severity.CRITICAL,
                       "疑似火灾：相邻楼层多个烟感报警" if adjacent else "疑似火灾：同一楼栋多个烟感报警",
                       ts, self._detail(place, together, adjacent),
                       scope=f"building:{place.building_id}", members=tuple(sorted(together)))]

    def on_tick(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        if now_ms >= self._next_sweep_ms:
            self._next_sweep_ms = now_ms + SWEEP_EVERY_MS
            for building in list(self._alarms):
                alarms = self._alarms[building]
                for device in [d for d, a in alarms.items() if now_ms - a.ts_ms > a.window_ms + LATE_MS]:
                    del alarms[device]
                if not alarms:
                    del self._alarms[building]
        return []

    def snapshot(self) -> dict[str, Any] | None:
        return {"alarms": {b: {d: [a.ts_ms, a.floor, a.unit, a.window_ms] for d, a in alarms.items()}
                           for b, alarms in self._alarms.items()}} if self._alarms else None

    def restore(self, state: Mapping[str, Any]) -> None:
        self._alarms = {b: {d: _Alarmed(int(a[0]), a[1], str(a[2]), int(a[3])) for d, a in alarms.items()}
                        for b, alarms in state.get("alarms", {}).items()}

    @staticmethod
    def _adjacent(alarms: Iterable[_Alarmed], floors_apart: float) -> bool:
        levels = sorted(_level(a.floor) for a in alarms if a.floor is not None)
        return any(b - a <= floors_apart for a, b in zip(levels, levels[1:], strict=False))

    @staticmethod
    def _detail(place: Place, together: dict[str, _Alarmed], adjacent: bool) -> str:
        ordered = sorted(together.items(), key=lambda da: (da[1].ts_ms, da[0]))
        spots = "、".join(" ".join(p for p in (_floor_zh(a.floor), a.unit) if p) + f"（{d}）"
                         for d, a in ordered[:_SPOTS_NAMED]) + ("等" if len(ordered) > _SPOTS_NAMED else "")
        n = len(ordered)
        span_ms = ordered[-1][1].ts_ms - ordered[0][1].ts_ms
        when = "同时报警" if span_ms < 1000 else f" {_duration_zh(span_ms)}内相继报警"
        why = "位于相邻楼层，烟气可能正在蔓延" if adjacent else "同一楼栋多户报警，不像单户厨房油烟误报"
        count = "两" if n == 2 else f"{n} "
        return f"楼栋 {place.building_id}：{spots}，{count}个探测器{when}，{why}；请立即派微型消防站到场核实"


# -- maintenance: what a detector says about itself ------------------------------------------------------------------


class DetectorMaintenance(Rule):
    """Faults, low batteries, detectors taken off their base, failed self-tests, residents muting again and again."""

    kinds = frozenset({KIND})
    messages = (sd.Fault, sd.LowBattery, sd.Heartbeat, sd.Tamper, sd.SelfTest, sd.Silenced)
    THRESHOLDS = {KIND: {"low_battery_pct": 20.0, "silence_count": 3.0, "silence_window_s": 86_400.0}}

    def __init__(self) -> None:
        self._silenced: dict[str, _Recent] = {}  # detector → when residents muted it
        self._next_sweep_ms = 0

    def quiet(self, readings: Sequence[Reading], ctx: RuleContext) -> npt.NDArray[np.bool_] | None:
        """Heartbeats charged at or above every detector's low-battery threshold: nothing here for them."""
        if not issubclass(type(readings[0].message), sd.Heartbeat):
            return None
        return at_least_every(readings, ctx, KIND, "low_battery_pct", "battery_pct")

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, device = reading.message, reading.device_id
        match msg:
            case sd.Fault():
                what = f"{msg.code}：{msg.detail}" if msg.detail else msg.code
                return _maintenance(reading, "fault", Severity.WARNING, "烟感故障",
                                    f"探测器 {device} 上报故障 {what}；故障期间可能无法报警，请安排维修")
            case sd.LowBattery():
                return _maintenance(reading, "low_battery", Severity.WARNING, "烟感电量低",
                                    f"探测器 {device} 上报电量低（{msg.battery_pct:g}%），电池耗尽后将无法报警，请更换电池")
            case sd.Heartbeat():
                floor_pct = _threshold(ctx, "low_battery_pct", device)
                if msg.battery_pct >= floor_pct:
                    return []
                return _maintenance(reading, "low_battery", Severity.WARNING, "烟感电量低",
                                    f"探测器 {device} 心跳电量 {msg.battery_pct:g}%，低于 {floor_pct:g}%；"
                                    f"电池耗尽后将无法报警，请更换电池")
            case sd.Tamper(state="removed"):
                return _maintenance(reading, "tamper", Severity.HIGH, "烟感被拆离底座",
                                    f"探测器 {device} 被从安装底座拆下：拆下的探测器保护不了任何人，请尽快核实并复位")
            case sd.SelfTest(result="fail"):
                return _maintenance(reading, "self_test_failed", Severity.WARNING, "烟感自检失败",
                                    f"探测器 {device} 自检未通过，可能无法正常报警，请上门检测或更换")
            case sd.Silenced():
                return self._silencing(reading, ctx)
        return []

    def _silencing(self, reading: Reading, ctx: RuleContext) -> list[Signal]:
        device = reading.device_id
        count = _threshold(ctx, "silence_count", device)
        window_ms = int(_threshold(ctx, "silence_window_s", device) * 1000)
        muted = self._silenced.setdefault(device, _Recent()).add(reading.ts_ms, window_ms)
        if muted < count:
            return []
        return _maintenance(reading, "repeated_silencing", Severity.WARNING, "烟感被反复消音",
                            f"探测器 {device} 在 {_duration_zh(window_ms)}内被消音 {muted} 次（阈值 {count:g} 次）："
                            f"住户反复按下消音键，可能是厨房油烟等误报源或探测器过于灵敏，也可能是真实隐患被忽视，请上门查看")

    def on_tick(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        if now_ms >= self._next_sweep_ms:
            self._next_sweep_ms = now_ms + SWEEP_EVERY_MS
            for device in [d for d, r in self._silenced.items() if r.stale(now_ms)]:
                del self._silenced[device]
        return []

    def snapshot(self) -> dict[str, Any] | None:
        return {"silenced": _dump_recent(self._silenced)} if self._silenced else None

    def restore(self, state: Mapping[str, Any]) -> None:
        self._silenced = _load_recent(state.get("silenced", {}))


# -- flapping: alarm ⇄ clear again and again ------------------------------------------------------------------------


class AlarmFlapping(Rule):
    """A detector switching between alarm and clear again and again: one incident that counts, not a storm.

    Every alarm is still raised by ``SmokeAlarm``; this tells maintenance the detector (or
    its kitchen) needs a look. A repeated alarm without a clear between is no switch, nor is
    a clear without an alarm before it.
    """

    kinds = frozenset({KIND})
    messages = (sd.Alarm, sd.AlarmCleared)
    THRESHOLDS = {KIND: {"flap_count": 4.0, "flap_window_s": 600.0}}

    def __init__(self) -> None:
        self._alarming: set[str] = set()  # sounding by its last alarm/clear message
        self._switches: dict[str, _Recent] = {}
        self._next_sweep_ms = 0

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, device = reading.message, reading.device_id
        if not isinstance(msg, sd.Alarm | sd.AlarmCleared):
            return []
        alarming = isinstance(msg, sd.Alarm)
        if alarming == (device in self._alarming):
            return []
        if alarming:
            self._alarming.add(device)
        else:
            self._alarming.discard(device)
        window_ms = int(_threshold(ctx, "flap_window_s", device) * 1000)
        switches = self._switches.setdefault(device, _Recent()).add(reading.ts_ms, window_ms)
        count = _threshold(ctx, "flap_count", device)
        if switches <= count:
            return []
        return _maintenance(reading, "flapping", Severity.WARNING, "烟感反复报警/消警",
                            f"探测器 {device} 在 {_duration_zh(window_ms)}内报警与消警切换 {switches} 次（超过 {count:g} 次）："
                            f"多为厨房油烟、水汽或探测器故障，请上门检查；每次报警仍照常处理")

    def on_tick(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        if now_ms >= self._next_sweep_ms:
            self._next_sweep_ms = now_ms + SWEEP_EVERY_MS
            for device in [d for d, r in self._switches.items() if r.stale(now_ms)]:
                del self._switches[device]
        return []

    def snapshot(self) -> dict[str, Any] | None:
        if not self._switches and not self._alarming:
            return None
        return {"alarming": sorted(self._alarming), "switches": _dump_recent(self._switches)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._alarming = set(state.get("alarming", ()))
        self._switches = _load_recent(state.get("switches", {}))


# -- silence: the dead-man timer and the storm (alerts/rules/silence.py) ---------------------------------------------


class DetectorSilence(DeadMan):
    """Detectors that stopped reporting, one by one, or many at once as one street incident (module docstring)."""

    KIND = KIND
    HEARTBEAT_MS = HEARTBEAT_MS
    THRESHOLDS = {KIND: {"offline_after_heartbeats": 3.0, "storm_count": 50.0, "storm_window_s": 300.0}}
    NOUN = "烟感探测器"
    ADVICE = "可能电池耗尽、断电、被拆除或网络故障，离线期间无法报警，请上门检查"


RULES: tuple[type[Rule], ...] = (SmokeAlarm, SuspectedFire, DetectorMaintenance, AlarmFlapping, DetectorSilence)
