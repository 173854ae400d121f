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
Detectors never heard from since the engine started count from its first tick, so a
restart does not page everything at once. A detector that reports again is online again;
a person closes the storm incident.

State is bounded: per-device entries only for registered detectors, windows trimmed by
time, and what outlives its window swept once a minute.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
import numpy as np
import numpy.typing as npt

from alerts.incidents import Severity, Signal
from alerts.rules.base import Place, Rule, RuleContext
from devices import smoke_detector as sd
from devices.messages import Offline
from devices.reading import Reading

KIND = sd.KIND.name
HEARTBEAT_MS = (sd.KIND.heartbeat_s or 0) * 1000
SWEEP_EVERY_MS = 60_000  # how often what outlived its window is dropped
LATE_MS = 10 * 60_000  # an event is kept this long past its window, for detectors whose messages arrive late
MAX_EVENTS_PER_DEVICE = 64  # a detector's window of silences or toggles never grows past this


def _threshold(ctx: RuleContext, name: str, device_id: str) -> float:
    return ctx.threshold(KIND, name, device_id)


def _duration_zh(ms: int) -> str:
    s = ms / 1000
    if s < 120:
        return f"{s:.0f} 秒"
    if s < 2 * 3600:
        return f"{s / 60:.0f} 分钟"
    return f"{round(s / 3600, 1):g} 小时"


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


class SmokeAlarm(Rule):
    """A detector sounding is a possible fire until a person says otherwise."""

    kinds = frozenset({KIND})

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
        alarms = self._alarms.setdefault(place.building_id, {})
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
    THRESHOLDS = {KIND: {"low_battery_pct": 20.0, "silence_count": 3.0, "silence_window_s": 86_400.0}}

    def __init__(self) -> None:
        self._silenced: dict[str, _Recent] = {}  # detector → when residents muted it
        self._next_sweep_ms = 0

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


# -- flapping: alarm ⇄ clear again and again ------------------------------------------------------------------------


class AlarmFlapping(Rule):
    """A detector switching between alarm and clear again and again: one incident that counts, not a storm.

    Every alarm is still raised by ``SmokeAlarm``; this tells maintenance the detector (or
    its kitchen) needs a look. A repeated alarm without a clear between is no switch, nor is
    a clear without an alarm before it.
    """

    kinds = frozenset({KIND})
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


# -- silence: the dead-man timer and the storm ----------------------------------------------------------------------

_ONLINE, _HELD, _OFFLINE, _IN_STORM = 0, 1, 2, 3  # HELD: overdue, waiting storm_window_s to see whether a storm forms
_NEVER = np.iinfo(np.int64).max


class DetectorSilence(Rule):
    """Detectors that stopped reporting, one by one, or many at once as one street incident (module docstring).

    The population (``ctx.devices``) is re-read every ``REFRESH_EVERY_MS``; between refreshes a
    tick costs one comparison unless some detector's deadline has passed, and then one
    vectorised pass over the population's deadlines.
    """

    kinds = frozenset({KIND})
    THRESHOLDS = {KIND: {"offline_after_heartbeats": 3.0, "storm_count": 50.0, "storm_window_s": 300.0}}
    REFRESH_EVERY_MS = 60_000
    # Place has no street; a detector's street is learnt from its readings. One never heard from
    # belongs to the street most detectors are heard from, or this one before any is.
    DEFAULT_STREET = "wanli"

    def __init__(self) -> None:
        self._next_refresh_ms = 0
        self._slot: dict[str, int] = {}
        self._ids: list[str] = []
        self._buildings: list[str] = []
        self._last_seen = np.empty(0, np.int64)  # engine clock; the start (or when it was registered) if never seen
        self._seen = np.empty(0, np.bool_)
        self._limit_ms = np.empty(0, np.int64)
        self._deadline = np.empty(0, np.int64)  # last seen + limit while online, _NEVER otherwise
        self._state = np.empty(0, np.int8)
        self._overdue_ms = np.empty(0, np.int64)
        self._street = np.empty(0, np.int32)  # into _streets; -1 not known yet
        self._streets: list[str] = []
        self._street_code: dict[str, int] = {}
        self._next_due_ms = _NEVER  # no deadline passes before this: the quiet tick's one comparison
        self._any_held = False
        self._unindexed: dict[str, tuple[int, int]] = {}  # heard from, not in the population yet → (seen, street)
        self._storm_last_ms: dict[int, int] = {}  # street → when a detector last joined its storm
        self._storm_size: dict[int, int] = {}  # street → detectors in its current storm

    # readings: every one but the broker's last will is a sign of life

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        if isinstance(reading.message, Offline):
            return []  # the broker speaking for a lost connection, not the detector
        street = self._code(reading.street)
        slot = self._slot.get(reading.device_id)
        if slot is None:
            self._unindexed[reading.device_id] = (now_ms, street)
            return []
        self._heard(slot, now_ms, street)
        return []

    def _heard(self, slot: int, now_ms: int, street: int) -> None:
        seen = max(int(self._last_seen[slot]), now_ms)
        self._last_seen[slot] = seen
        self._seen[slot] = True
        self._street[slot] = street
        self._state[slot] = _ONLINE
        deadline = seen + int(self._limit_ms[slot])
        self._deadline[slot] = deadline
        if deadline < self._next_due_ms:
            self._next_due_ms = deadline

    # ticks

    def on_tick(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        if now_ms >= self._next_refresh_ms:
            self._refresh(ctx, now_ms)
        if now_ms > self._next_due_ms:
            overdue = np.flatnonzero(self._deadline < now_ms)
            self._state[overdue] = _HELD
            self._overdue_ms[overdue] = now_ms
            self._deadline[overdue] = _NEVER
            self._any_held |= overdue.size > 0
            self._next_due_ms = int(self._deadline.min()) if self._deadline.size else _NEVER
        return self._settle_held(ctx, now_ms) if self._any_held else []

    def _settle_held(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        """Held detectors join their street's storm, or, held a full window without one, go offline on their own."""
        held = np.flatnonzero(self._state == _HELD)
        if held.size == 0:
            self._any_held = False
            return []
        window_ms = int(_threshold(ctx, "storm_window_s", "") * 1000)  # street-wide: the kind's (no device's) value
        storm_count = _threshold(ctx, "storm_count", "")
        streets = self._streets_resolved()
        went_silent = ((self._state == _HELD) | (self._state == _IN_STORM)) & (self._overdue_ms > now_ms - window_ms)
        per_street = np.bincount(streets[went_silent], minlength=len(self._streets))
        signals: list[Signal] = []
        for street in np.unique(streets[held]).tolist():
            members = held[streets[held] == street]
            last_joined = self._storm_last_ms.get(street)
            ongoing = last_joined is not None and now_ms - last_joined <= window_ms
            if ongoing or per_street[street] > storm_count:
                signals.append(self._storm(street, members, ongoing, storm_count, window_ms, now_ms))
                continue
            due = members[self._overdue_ms[members] <= now_ms - window_ms]
            self._state[due] = _OFFLINE
            signals.extend(self._offline(i, ctx, now_ms) for i in due.tolist())
        return signals

    def _storm(self, street: int, members: npt.NDArray[np.intp], ongoing: bool, storm_count: float, window_ms: int,
               now_ms: int) -> Signal:
        self._state[members] = _IN_STORM
        self._storm_last_ms[street] = now_ms
        size = self._storm_size[street] = (self._storm_size.get(street, 0) if ongoing else 0) + members.size
        ids = sorted(self._ids[i] for i in members.tolist())
        name = self._streets[street]
        return Signal(ids[0], KIND, "mass_offline", "maintenance", Severity.HIGH, "大面积烟感离线（疑似网络或供电中断）",
                      now_ms,
                      f"街道 {name}：{size} 个烟感探测器相继失联（{_duration_zh(window_ms)}内超过 {storm_count:g} 个即视为成片离线），"
                      f"疑似网络或供电大面积中断，请联系运营商和物业排查；这些探测器不再逐个告警，恢复上报后自动解除离线",
                      scope=f"street:{name}", members=tuple(ids))

    def _offline(self, i: int, ctx: RuleContext, now_ms: int) -> Signal:
        device = self._ids[i]
        silent = _duration_zh(now_ms - int(self._last_seen[i]))
        beats = _threshold(ctx, "offline_after_heartbeats", device)
        since = f"已 {silent}没有任何上报" if self._seen[i] else f"自告警引擎开始监视（{silent}前）以来没有任何上报"
        return Signal(device, KIND, "offline", "maintenance", Severity.WARNING, "烟感离线", now_ms,
                      f"探测器 {device} {since}（心跳每 {_duration_zh(HEARTBEAT_MS)}一次，已超过 {beats:g} 个周期）："
                      f"可能电池耗尽、断电、被拆除或网络故障，离线期间无法报警，请上门检查")

    def _streets_resolved(self) -> npt.NDArray[np.int32]:
        """Every slot's street; one never heard from gets the street most detectors are heard from."""
        unknown = self._street < 0
        if not unknown.any():
            return self._street
        known = self._street[~unknown]
        if known.size:
            home = int(np.bincount(known).argmax())
        else:
            home = self._code(self.DEFAULT_STREET)
        return np.where(unknown, np.int32(home), self._street)

    def _code(self, street: str) -> int:
        code = self._street_code.get(street)
        if code is None:
            code = self._street_code[street] = len(self._streets)
            self._streets.append(street)
        return code

    # the population

    def _refresh(self, ctx: RuleContext, now_ms: int) -> None:
        """Re-read the registered detectors: newcomers count from now, the retired are forgotten."""
        self._next_refresh_ms = now_ms + self.REFRESH_EVERY_MS
        places: Sequence[Place] = ctx.devices(KIND)
        n = len(places)
        ids = [p.device_id for p in places]
        buildings = [p.building_id for p in places]
        if ids == self._ids and buildings == self._buildings:  # the usual minute: nobody registered, moved or retired
            self._merge_unindexed()
            return
        old = np.fromiter((self._slot.get(d, -1) for d in ids), np.int64, n)
        kept = np.flatnonzero(old >= 0)
        src = old[kept]

        last_seen = np.full(n, now_ms, np.int64)
        seen = np.zeros(n, np.bool_)
        state = np.full(n, _ONLINE, np.int8)
        overdue = np.zeros(n, np.int64)
        street = np.full(n, -1, np.int32)
        limit = np.full(n, -1, np.int64)
        last_seen[kept], seen[kept], state[kept] = self._last_seen[src], self._seen[src], self._state[src]
        overdue[kept], street[kept], limit[kept] = self._overdue_ms[src], self._street[src], self._limit_ms[src]
        # Thresholds are looked up again only where they may have changed: new detectors and moved ones.
        old_buildings = self._buildings
        for i, j in zip(kept.tolist(), src.tolist(), strict=True):
            if old_buildings[j] != buildings[i]:
                limit[i] = -1
        for i in np.flatnonzero(limit < 0).tolist():
            limit[i] = int(_threshold(ctx, "offline_after_heartbeats", ids[i]) * HEARTBEAT_MS)

        self._ids, self._buildings, self._slot = ids, buildings, {d: i for i, d in enumerate(ids)}
        self._last_seen, self._seen, self._state, self._overdue_ms = last_seen, seen, state, overdue
        self._street, self._limit_ms = street, limit
        self._deadline = np.where(state == _ONLINE, last_seen + limit, _NEVER)
        self._next_due_ms = int(self._deadline.min()) if n else _NEVER
        self._any_held = bool((state == _HELD).any())
        self._merge_unindexed()

    def _merge_unindexed(self) -> None:
        for device, (at_ms, code) in self._unindexed.items():
            slot = self._slot.get(device)
            if slot is not None:
                self._heard(slot, at_ms, code)
        self._unindexed.clear()


RULES: tuple[type[Rule], ...] = (SmokeAlarm, SuspectedFire, DetectorMaintenance, AlarmFlapping, DetectorSilence)
