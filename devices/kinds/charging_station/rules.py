"""Rules for e-bike charging stations: a lithium-battery fire announces itself first as heat.

Each port of a station is judged on its own, with the port number in the condition
(``port_overheat:3``) so a hot port 3 and a hot port 7 are two incidents of the same station.
The telemetry conditions (overheat, overcurrent, power into a full battery, an endless
session) are level-triggered: every snapshot that still shows the condition says so again,
and the engine folds the repeats into the open incident. A station that stops reporting is
noticed by ``StationOffline`` from the clock, not from a message.

``StationOffline`` is the shared dead-man timer (``alerts/rules/silence.py``): a station
silent past its heartbeats is offline, and many at once (a power cut across a community)
are one street incident, not one page per shed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from alerts.incidents import Severity, Signal
from alerts.rules.base import Rule, RuleContext, threshold_span
from alerts.rules.silence import DeadMan
from devices.kinds.charging_station import contract as cs
from devices.reading import Reading

KIND = "charging_station"
_STALE_MS = 3_600_000  # a station's temperature window is forgotten an hour after its last snapshot
_STATE_ZH = {"idle": "空闲", "charging": "充电中", "full": "已充满", "fault": "故障"}


class ShedSmoke(Rule):
    """Smoke in a charging shed is treated as a lithium-battery fire until verified."""

    kinds = frozenset({KIND})
    messages = (cs.SmokeDetected,)

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        if not isinstance(reading.message, cs.SmokeDetected):
            return []
        return [Signal(reading.device_id, reading.kind, "shed_smoke", "fire", Severity.CRITICAL, "充电棚烟雾报警",
                       reading.ts_ms, f"充电站 {reading.device_id} 烟雾传感器报警")]


class PortConditions(Rule):
    """What one station snapshot (or an overcurrent event) says about each port, right now."""

    kinds = frozenset({KIND})
    messages = (cs.Overcurrent, cs.StationStatus)
    THRESHOLDS = {KIND: {"port_temp_c": 60.0, "max_current_a": 10.0, "full_power_w": 20.0, "max_session_h": 10.0}}

    def quiet(self, readings: Sequence[Reading], ctx: RuleContext) -> npt.NDArray[np.bool_] | None:
        """Snapshots whose every port is within the bounds of every station: not too hot, not over the current, not
        feeding a full battery, no session too long (each compared with the lowest value any station has)."""
        if not issubclass(type(readings[0].message), cs.StationStatus):
            return None
        spans = [threshold_span(ctx, KIND, name) for name in ("port_temp_c", "max_current_a", "full_power_w",
                                                               "max_session_h")]
        if any(span is None for span in spans):
            return None
        temp_c, max_a, full_w, max_session_h = (span[0] for span in spans)  # type: ignore[index]
        max_session_s = max_session_h * 3600

        def within(ports: Sequence[cs.Port]) -> bool:
            return all((p.temperature_c is None or p.temperature_c <= temp_c) and p.current_a <= max_a
                       and (p.state != "full" or p.power_w <= full_w)
                       and (p.state not in ("charging", "full") or p.session_s <= max_session_s) for p in ports)

        return np.fromiter((within(r.message.ports) for r in readings), np.bool_, len(readings))

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, dev = reading.message, reading.device_id
        if isinstance(msg, cs.Overcurrent):
            return [_overcurrent(reading, msg.port, msg.current_a, "上报过流事件")]
        if not isinstance(msg, cs.StationStatus) or not msg.ports:
            return []
        temp_c = ctx.threshold(KIND, "port_temp_c", dev)
        max_a = ctx.threshold(KIND, "max_current_a", dev)
        full_w = ctx.threshold(KIND, "full_power_w", dev)
        max_session_s = ctx.threshold(KIND, "max_session_h", dev) * 3600
        out: list[Signal] = []
        for p in msg.ports:
            where = f"充电站 {dev} 第 {p.port} 号口"
            if p.temperature_c is not None and p.temperature_c > temp_c:
                out.append(Signal(dev, KIND, f"port_overheat:{p.port}", "charging", Severity.HIGH, "充电口过热",
                                  reading.ts_ms, f"{where}温度 {p.temperature_c:.1f} °C，超过 {temp_c:g} °C"
                                  f"（{_STATE_ZH[p.state]}，{p.power_w:.0f} W），请现场查看并断电"))
            if p.current_a > max_a:
                out.append(_overcurrent(reading, p.port, p.current_a, f"电流超过 {max_a:g} A"))
            if p.state == "full" and p.power_w > full_w:
                out.append(Signal(dev, KIND, f"charging_full:{p.port}", "charging", Severity.WARNING,
                                  "电池已充满仍在供电", reading.ts_ms,
                                  f"{where}电池已充满，仍以 {p.power_w:.0f} W 供电（超过 {full_w:g} W），"
                                  "持续给满电电池供电易致过充，请检查充电桩断电功能"))
            if p.state in ("charging", "full") and p.session_s > max_session_s:
                out.append(Signal(dev, KIND, f"session_too_long:{p.port}", "charging", Severity.WARNING,
                                  "充电时间过长", reading.ts_ms,
                                  f"{where}已连续充电 {p.session_s / 3600:.1f} 小时，超过 {max_session_s / 3600:g} 小时，"
                                  "请确认电池与充电器是否异常"))
        return out


def _overcurrent(reading: Reading, port: int, current_a: float, why: str) -> Signal:
    return Signal(reading.device_id, KIND, f"overcurrent:{port}", "charging", Severity.HIGH, "充电口过流",
                  reading.ts_ms, f"充电站 {reading.device_id} 第 {port} 号口电流 {current_a:.1f} A，{why}，"
                  "可能短路或电池异常，请断电检查")


def temperature_slopes(t_ms: npt.ArrayLike, temps_c: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Least-squares slope in °C per minute of each column of ``temps_c`` (rows: samples at ``t_ms``).

    Missing samples are NaN; a column with fewer than three samples has no slope (NaN).
    """
    t = np.asarray(t_ms, dtype=np.float64)
    y = np.asarray(temps_c, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if t.size == 0:
        return np.full(y.shape[1], np.nan)
    have = ~np.isnan(y)
    n = have.sum(axis=0)
    x = np.broadcast_to(((t - t.min()) / 60_000.0)[:, None], y.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        x_mean = np.where(have, x, 0.0).sum(axis=0) / n
        y_mean = np.where(have, y, 0.0).sum(axis=0) / n
        dx = np.where(have, x - x_mean, 0.0)
        dy = np.where(have, y - y_mean, 0.0)
        sxx = (dx * dx).sum(axis=0)
        slope = (dx * dy).sum(axis=0) / sxx
    return np.where((n >= 3) & (sxx > 0), slope, np.nan)


_NO_TIME_LOW = np.iinfo(np.int64).min  # in place of a time a port has no sample at (never its latest)
_NO_TIME_HIGH = np.iinfo(np.int64).max


class _PortTemperatures:
    """One station's recent port temperatures: rows are snapshots, columns are ports (NaN: not reported)."""

    def __init__(self) -> None:
        self.t_ms = np.empty(0, dtype=np.int64)
        self.temps = np.empty((0, 0))
        self.column: dict[int, int] = {}

    def add(self, ts_ms: int, ports: Sequence[cs.Port], window_ms: int) -> None:
        for p in ports:
            if p.temperature_c is not None and p.port not in self.column:
                self.column[p.port] = len(self.column)
        if len(self.column) > self.temps.shape[1]:
            grown = np.full((self.temps.shape[0], len(self.column)), np.nan)
            grown[:, : self.temps.shape[1]] = self.temps
            self.temps = grown
        row = np.full((1, len(self.column)), np.nan)
        for p in ports:
            if p.temperature_c is not None:
                row[0, self.column[p.port]] = p.temperature_c
        start = max(ts_ms, int(self.t_ms.max(initial=ts_ms))) - window_ms
        keep = self.t_ms >= start
        if ts_ms >= start:  # a late snapshot older than the window adds nothing
            self.t_ms, self.temps = np.append(self.t_ms[keep], ts_ms), np.vstack([self.temps[keep], row])
        else:
            self.t_ms, self.temps = self.t_ms[keep], self.temps[keep]

    def rising(self, min_span_ms: int) -> list[tuple[int, float, float]]:
        """(port, slope °C/min, latest °C) of every port with a slope over samples spanning ``min_span_ms``."""
        if not self.column:
            return []
        slopes = temperature_slopes(self.t_ms, self.temps).tolist()
        # every column at once (one snapshot of 10 ports asked numpy 70 times, one port at a time): the span of
        # the times it has a sample at, and its sample at the latest of them (the first such row, as argmax)
        have = ~np.isnan(self.temps)
        t = self.t_ms[:, None]
        when = np.where(have, t, _NO_TIME_LOW)
        latest_row = when.argmax(axis=0)
        # (a column without samples has a meaningless span here, and no slope)
        span = (when.max(axis=0) - np.where(have, t, _NO_TIME_HIGH).min(axis=0)).tolist()
        latest = self.temps[latest_row, np.arange(self.temps.shape[1])].tolist()
        out = []
        for port, col in self.column.items():
            slope = slopes[col]
            if slope != slope:  # NaN: no slope
                continue
            if span[col] >= min_span_ms:
                out.append((port, slope, latest[col]))
        return out

    def dump(self) -> dict[str, Any]:
        return {"t_ms": self.t_ms.tolist(), "columns": [[port, col] for port, col in self.column.items()],
                "temps": [[None if np.isnan(v) else float(v) for v in row] for row in self.temps]}

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> _PortTemperatures:
        station = cls()
        station.t_ms = np.array(data["t_ms"], dtype=np.int64)
        station.column = {int(port): int(col) for port, col in data["columns"]}
        station.temps = np.array([[np.nan if v is None else v for v in row] for row in data["temps"]],
                                 dtype=np.float64).reshape(len(station.t_ms), len(station.column))
        return station


class ThermalRunaway(Rule):
    """A port whose temperature climbs fast is the first sign of lithium thermal runaway, before any smoke.

    The slope is a least-squares fit over the window's samples, so one noisy reading does not
    raise a fire and one missed snapshot does not hide one. ``rise_min_span_s`` keeps a burst
    of snapshots seconds apart (sensor resolution is about 0.5 °C) from passing for a trend.
    """

    kinds = frozenset({KIND})
    messages = (cs.StationStatus,)
    THRESHOLDS = {KIND: {"rise_c_per_min": 2.0, "rise_window_s": 300.0, "rise_min_span_s": 60.0}}

    def __init__(self) -> None:
        self._stations: dict[str, _PortTemperatures] = {}

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, dev = reading.message, reading.device_id
        if not isinstance(msg, cs.StationStatus) or not any(p.temperature_c is not None for p in msg.ports):
            return []
        window_s = ctx.threshold(KIND, "rise_window_s", dev)
        limit = ctx.threshold(KIND, "rise_c_per_min", dev)
        station = self._stations.setdefault(dev, _PortTemperatures())
        station.add(reading.ts_ms, msg.ports, int(window_s * 1000))
        min_span_ms = int(ctx.threshold(KIND, "rise_min_span_s", dev) * 1000)
        return [Signal(dev, KIND, f"thermal_runaway:{port}", "fire", Severity.CRITICAL, "充电口温度急升，疑似热失控",
                       reading.ts_ms, f"充电站 {dev} 第 {port} 号口温度在 {window_s / 60:g} 分钟内以 {slope:.1f} °C/分钟 "
                       f"上升（超过 {limit:g} °C/分钟，当前 {latest:.1f} °C），疑似锂电池热失控，"
                       "请立即断电、疏散并派微型消防站")
                for port, slope, latest in station.rising(min_span_ms) if slope > limit]

    def on_tick(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        # A station that stopped sending snapshots keeps no window (its samples are minutes old).
        for dev in [d for d, st in self._stations.items() if not st.t_ms.size or now_ms - int(st.t_ms.max()) > _STALE_MS]:
            del self._stations[dev]
        return []

    def snapshot(self) -> dict[str, Any] | None:
        return {"stations": {d: st.dump() for d, st in self._stations.items()}} if self._stations else None

    def restore(self, state: Mapping[str, Any]) -> None:
        self._stations = {d: _PortTemperatures.load(st) for d, st in state.get("stations", {}).items()}


class MainsPower(Rule):
    """A station without mains power stops charging and, worse, stops reporting its smoke sensor."""

    kinds = frozenset({KIND})
    messages = (cs.PowerLost, cs.StationStatus)

    def quiet(self, readings: Sequence[Reading], ctx: RuleContext) -> npt.NDArray[np.bool_] | None:
        """Snapshots of a station on mains power."""
        if not issubclass(type(readings[0].message), cs.StationStatus):
            return None
        return np.fromiter((r.message.mains_power for r in readings), np.bool_, len(readings))

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg = reading.message
        if isinstance(msg, cs.PowerLost):
            why = "上报市电中断"
        elif isinstance(msg, cs.StationStatus) and not msg.mains_power:
            why = "状态显示无市电"
        else:
            return []
        return [Signal(reading.device_id, KIND, "power_lost", "maintenance", Severity.WARNING, "充电站断电",
                       reading.ts_ms, f"充电站 {reading.device_id} {why}，充电与烟雾监测可能中断，请物业检查供电")]


class StationOffline(DeadMan):
    """No message from a station for several heartbeats: its smoke sensor and ports are no longer watched."""

    KIND = KIND
    HEARTBEAT_MS = (cs.KIND.heartbeat_s or 60) * 1000
    THRESHOLDS = {KIND: {"offline_after_heartbeats": 3.0, "storm_count": 10.0, "storm_window_s": 120.0}}
    NOUN = "充电站"
    ADVICE = "烟雾与过热监测失效，请检查网络与供电"


RULES: tuple[type[Rule], ...] = (ShedSmoke, PortConditions, ThermalRunaway, MainsPower, StationOffline)
