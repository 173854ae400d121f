"""Rules for micro fire stations (微型消防站): ready before the fire, and on time during it.

A standardised station answers a dispatch within 1 minute and is on scene within 3. The
engine tells ``DispatchResponse`` when it dispatches a station (``expect_dispatch``); the
station's duty terminal then reports acknowledge / depart / on scene / finished with the
dispatch id. A step that has not come by its deadline raises an incident at once, from the
clock, and the times feed the KPI screen (``response_times``). An incident that ends
before the station finished (a false alarm, a closed group) cancels its dispatches
(``cancel_dispatch``): the station is stood down and no deadline runs on them any more. Expected dispatches are
written to SQL right after the batch that made them (``persist_at_once``): a deadline
pending when the service stops or crashes still fires after the restart, on time or at
once if it passed meanwhile. What is written then is only what changed since the last
checkpoint, and which dispatches are still timed (``urgent_is_delta``): the 5,000
dispatches kept for the KPIs go with the checkpoint every ten seconds, not with each
alarm. A duty terminal that stopped reporting is offline (``TerminalOffline``, the shared
dead-man timer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from alerts.incidents import Severity, Signal
from alerts.rules.base import Rule, RuleContext
from alerts.rules.silence import DeadMan
from devices.kinds.fire_station import contract as fs
from devices.reading import Reading

KIND = "fire_station"
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")  # no daylight saving in China
_ITEM_ZH = {"extinguisher": "灭火器", "hose": "水带", "breathing_set": "空气呼吸器", "helmet": "消防头盔",
            "fire_suit": "消防服", "boots": "消防靴", "axe": "消防斧", "flashlight": "照明灯", "rope": "安全绳",
            "nozzle": "水枪"}
_STATUS_ZH = {"missing": "缺失", "expired": "过期", "damaged": "损坏"}
MAX_DISPATCHES = 5000  # dispatches remembered for the KPI screen


def shanghai_date(now_ms: int) -> date:
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC).astimezone(SHANGHAI).date()


def _duration_zh(seconds: float) -> str:
    return f"{seconds / 60:g} 分钟" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} 秒"


class Readiness(Rule):
    """Too few people on duty, or the terminal itself says not ready: the station cannot turn out in a minute."""

    kinds = frozenset({KIND})
    messages = (fs.DutyStatus, fs.ShiftChange)
    THRESHOLDS = {KIND: {"min_staff": 3.0}}

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg, dev = reading.message, reading.device_id
        if not isinstance(msg, fs.DutyStatus | fs.ShiftChange):
            return []
        min_staff = ctx.threshold(KIND, "min_staff", dev)
        why = []
        if msg.staff_on_duty < min_staff:
            why.append(f"在岗 {msg.staff_on_duty} 人，少于 {min_staff:g} 人")
        if isinstance(msg, fs.DutyStatus) and not msg.ready:
            why.append("值守终端报告未就绪")
        if not why:
            return []
        return [Signal(dev, KIND, "not_ready", "readiness", Severity.HIGH, "微型消防站未处于战备状态", reading.ts_ms,
                       f"微型消防站 {dev}：{'；'.join(why)}，无法保证 1 分钟响应，请街道调配人员")]


class Equipment(Rule):
    """An equipment check that found something missing, broken or past its date."""

    kinds = frozenset({KIND})
    messages = (fs.EquipmentCheck,)

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg = reading.message
        if not isinstance(msg, fs.EquipmentCheck):
            return []
        today = shanghai_date(now_ms).isoformat()  # ISO dates compare as strings
        problems = []
        for it in msg.items:
            name = _ITEM_ZH.get(it.item, it.item)
            expiry = f"，有效期至 {it.expires_on}" if it.expires_on else ""
            if it.status != "ok":
                problems.append(f"{name} ×{it.quantity} {_STATUS_ZH[it.status]}{expiry}")
            elif it.expires_on is not None and it.expires_on < today:
                problems.append(f"{name} ×{it.quantity} 已过有效期（{it.expires_on}）")
        if not problems:
            return []
        by = f"（检查人 {msg.checked_by}）" if msg.checked_by else ""
        return [Signal(reading.device_id, KIND, "equipment", "maintenance", Severity.WARNING, "微型消防站器材不全",
                       reading.ts_ms, f"微型消防站 {reading.device_id} 器材检查发现 {len(problems)} 项问题{by}："
                       + "；".join(problems))]


@dataclass(slots=True)
class _Dispatch:
    dispatch_id: str
    station: str
    incident: str
    dispatched_ms: int
    ack_ms: int | None = None
    arrive_ms: int | None = None
    ack_late: bool = False
    arrive_late: bool = False
    finished_ms: int | None = None  # the station reported the job done
    cancelled_ms: int | None = None  # the incident ended (false alarm, closed) first: the station stood down

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in _DISPATCH_FIELDS}  # dataclasses.asdict deep-copies: 40x slower


_DISPATCH_FIELDS = tuple(f.name for f in fields(_Dispatch))


class DispatchResponse(Rule):
    """The 1-minute / 3-minute rule, measured per dispatch, each breach raised once.

    Step times are the terminal's own timestamps (when the button was pressed, not when the
    message got through), held between the dispatch and the engine's now so a wrong terminal
    clock cannot report an answer before the call. Any later step implies the earlier ones:
    a station on scene has acknowledged.
    """

    kinds = frozenset({KIND})
    messages = (fs.DispatchStep,)
    THRESHOLDS = {KIND: {"ack_within_s": 60.0, "arrive_within_s": 180.0}}
    persist_at_once = True
    urgent_is_delta = True

    def __init__(self) -> None:
        self._dispatches: dict[str, _Dispatch] = {}  # every remembered dispatch, oldest first
        self._waiting: dict[str, _Dispatch] = {}  # those a deadline can still catch
        # Changes are numbered; the checkpoint records the number it was taken at, and the urgent
        # delta holds the dispatches changed after the last checkpoint written.
        self._gen = 0
        self._saved_gen = 0
        self._changed_at: dict[str, int] = {}  # dispatch id → number of its last change not yet checkpointed

    def _touch(self, d: _Dispatch) -> None:
        self._gen += 1
        self._changed_at[d.dispatch_id] = self._gen
        self.changed = True

    def expect_dispatch(self, dispatch_id: str, station_id: str, incident_id: str, now_ms: int) -> None:
        """The engine dispatched a station (call under the engine's lock, before the station can answer)."""
        if dispatch_id not in self._dispatches:
            d = self._dispatches[dispatch_id] = self._waiting[dispatch_id] = _Dispatch(dispatch_id, station_id,
                                                                                       incident_id, now_ms)
            self._forget_oldest_finished()
            self._touch(d)

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg = reading.message
        if not isinstance(msg, fs.DispatchAck | fs.DispatchDepart | fs.DispatchOnScene | fs.DispatchFinished):
            return []
        d = self._dispatches.get(msg.dispatch_id)
        if d is None or d.station != reading.device_id:
            return []  # not a dispatch of ours to this station (another station's id, or one long forgotten)
        if d.cancelled_ms is not None:
            return []  # called off: a late answer to a cancelled dispatch is nobody's breach
        self._touch(d)
        if isinstance(msg, fs.DispatchFinished) and d.finished_ms is None:
            d.finished_ms = min(max(reading.ts_ms, d.dispatched_ms), now_ms)
        at_ms = max(d.dispatched_ms, min(reading.ts_ms, now_ms))
        if d.ack_ms is None:
            d.ack_ms = at_ms
        if isinstance(msg, fs.DispatchOnScene | fs.DispatchFinished) and d.arrive_ms is None:
            d.arrive_ms = at_ms
        return self._breaches(d, ctx, now_ms)

    def on_tick(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        return [s for d in list(self._waiting.values()) for s in self._breaches(d, ctx, now_ms)]

    def open_dispatches(self, incident_id: str) -> list[tuple[str, str]]:
        """The dispatches to this incident a station may still be running on: (dispatch id, station), oldest first."""
        return [(d.dispatch_id, d.station) for d in list(self._dispatches.values())
                if d.incident == incident_id and d.finished_ms is None and d.cancelled_ms is None]

    def cancel_dispatch(self, dispatch_id: str, now_ms: int) -> None:
        """The incident ended before the station finished: the dispatch is closed and no deadline runs on it."""
        d = self._dispatches.get(dispatch_id)
        if d is None or d.cancelled_ms is not None:
            return
        d.cancelled_ms = now_ms
        self._waiting.pop(dispatch_id, None)
        self._touch(d)

    def _breaches(self, d: _Dispatch, ctx: RuleContext, now_ms: int) -> list[Signal]:
        out: list[Signal] = []
        if d.cancelled_ms is not None:
            self._waiting.pop(d.dispatch_id, None)
            return out
        ack_s = ctx.threshold(KIND, "ack_within_s", d.station)
        arrive_s = ctx.threshold(KIND, "arrive_within_s", d.station)
        if not d.ack_late and ((d.ack_ms if d.ack_ms is not None else now_ms) - d.dispatched_ms > ack_s * 1000):
            d.ack_late = True
            took = f"，{(d.ack_ms - d.dispatched_ms) / 1000:.0f} 秒后才确认" if d.ack_ms is not None else ""
            out.append(self._signal(d, "dispatch_ack_late", "微型消防站出动确认超时", now_ms,
                                    f"微型消防站 {d.station} 未在 {_duration_zh(ack_s)}内确认出动{took}"))
        if not d.arrive_late and ((d.arrive_ms if d.arrive_ms is not None else now_ms) - d.dispatched_ms
                                  > arrive_s * 1000):
            d.arrive_late = True
            took = f"，{(d.arrive_ms - d.dispatched_ms) / 1000:.0f} 秒后才到场" if d.arrive_ms is not None else ""
            out.append(self._signal(d, "dispatch_arrival_late", "微型消防站到场超时", now_ms,
                                    f"微型消防站 {d.station} 未在 {_duration_zh(arrive_s)}内到达现场{took}"))
        if (d.ack_late or d.ack_ms is not None) and (d.arrive_late or d.arrive_ms is not None):  # nothing left to catch
            if self._waiting.pop(d.dispatch_id, None) is not None:
                self._touch(d)
        if out:
            self._touch(d)
        return out

    @staticmethod
    def _signal(d: _Dispatch, condition: str, title: str, now_ms: int, why: str) -> Signal:
        return Signal(d.station, KIND, f"{condition}:{d.dispatch_id}", "fire", Severity.HIGH, title, now_ms,
                      f"{why}（派单 {d.dispatch_id}，事件 {d.incident}），请街道城运中心电话督促或改派")

    def response_times(self) -> list[dict[str, object]]:
        """Every dispatch still remembered, oldest first: seconds to acknowledge and to arrive (None: not yet)."""
        out = []
        for d in list(self._dispatches.values()):
            row = d.as_dict()
            row["ack_s"] = (d.ack_ms - d.dispatched_ms) / 1000 if d.ack_ms is not None else None
            row["arrive_s"] = (d.arrive_ms - d.dispatched_ms) / 1000 if d.arrive_ms is not None else None
            out.append(row)
        return out

    def snapshot(self) -> dict[str, Any] | None:
        if not self._dispatches:
            return None
        return {"gen": self._gen, "dispatches": [d.as_dict() for d in self._dispatches.values()],
                "waiting": list(self._waiting)}

    def saved(self, snapshot: Mapping[str, Any] | None) -> None:
        gen = int(snapshot["gen"]) if snapshot else 0  # None: no dispatch had come yet, so nothing was numbered
        self._saved_gen = max(self._saved_gen, gen)
        self._changed_at = {k: g for k, g in self._changed_at.items() if g > self._saved_gen}

    def urgent_snapshot(self) -> dict[str, Any] | None:
        """The dispatches changed since the checkpoint, and every dispatch still timed (a short list)."""
        changed = [self._dispatches[k].as_dict() for k in self._changed_at if k in self._dispatches]
        return {"gen": self._gen, "dispatches": changed, "waiting": list(self._waiting)}

    def restore(self, state: Mapping[str, Any]) -> None:
        # Dispatches expected since the engine started (none, normally) stay; the snapshot fills in the rest.
        self._dispatches = {d.dispatch_id: d for d in _dispatches_of(state)} | self._dispatches
        self._waiting = {k: self._dispatches[k] for k in state.get("waiting", []) if k in self._dispatches} | self._waiting
        self._gen = self._saved_gen = max(self._gen, int(state.get("gen", 0)))

    def restore_urgent(self, state: Mapping[str, Any]) -> None:
        """Changes written after the checkpoint win over it; its list of timed dispatches is the whole list."""
        gen = int(state.get("gen", 0))
        if gen <= self._saved_gen:
            return  # the checkpoint was written after this delta: it already holds all of it
        for d in _dispatches_of(state):
            self._dispatches[d.dispatch_id] = d
        self._waiting = {k: self._dispatches[k] for k in state.get("waiting", []) if k in self._dispatches}
        self._gen = gen  # not _saved_gen: the delta's changes are not in the checkpoint, so they stay dirty
        self._changed_at = {d["dispatch_id"]: gen for d in state.get("dispatches", [])}
        self._forget_oldest_finished()

    def _forget_oldest_finished(self) -> None:
        """Keep memory bounded: the oldest finished dispatches go first, then (never in practice) the oldest of all."""
        excess = len(self._dispatches) - MAX_DISPATCHES
        if excess <= 0:
            return
        finished = [k for k, d in self._dispatches.items() if d.arrive_ms is not None][:excess]
        gone = set(finished)
        oldest = [k for k in self._dispatches if k not in gone][: excess - len(finished)]
        for dispatch_id in finished + oldest:
            del self._dispatches[dispatch_id]
            self._waiting.pop(dispatch_id, None)
            self._changed_at.pop(dispatch_id, None)


def _dispatches_of(state: Mapping[str, Any]) -> list[_Dispatch]:
    return [_Dispatch(**{k: v for k, v in d.items() if k in _DISPATCH_FIELDS}) for d in state.get("dispatches", [])]


class TerminalOffline(DeadMan):
    """A station's duty terminal silent for several heartbeats: the station cannot be dispatched by the engine."""

    KIND = KIND
    HEARTBEAT_MS = (fs.KIND.heartbeat_s or 300) * 1000
    THRESHOLDS = {KIND: {"offline_after_heartbeats": 3.0, "storm_count": 3.0, "storm_window_s": 120.0}}
    NOUN = "微型消防站值守终端"
    ADVICE = "派单将无法送达，请街道城运中心电话联系该站并检查终端网络与供电"
    OFFLINE_SEVERITY = Severity.HIGH


RULES: tuple[type[Rule], ...] = (Readiness, Equipment, DispatchResponse, TerminalOffline)
