"""Dead-man timers: devices that stopped reporting, one by one or many at once, and how they survive a restart.

Two timers live here, both over the registered population in numpy arrays:

- ``DeadMan`` is the base of every *offline* rule (smoke detectors, charging stations,
  one-touch alarms, micro fire stations' duty terminals). A device silent for more than
  ``offline_after_heartbeats`` heartbeat intervals is overdue. It is held for
  ``storm_window_s`` before its own ``offline`` signal goes out: if in the meantime more
  than ``storm_count`` devices of its kind in its street went overdue within the window, or
  are *late* (not yet overdue but already missing heartbeats, ``DeadMan._late``: in an
  outage devices go overdue one by one over a whole heartbeat interval, each at its own last
  heartbeat plus the limit), it is a network or power outage: they all go into one
  ``mass_offline`` incident of the street instead, and so do those that follow while the
  storm lasts. Five minutes late on hours of
  silence costs nothing; paging a thousand times does. When the devices of a storm report
  again the storm incident says how many are back (at most once a minute), and once all are
  back it drops to a warning and says so: a person still finds out why and closes it.
- ``SilenceWatch`` is the plain timer of the one-touch alarm's inactivity check (no storm:
  a day without activity at home is about the person, not the network).

Restarts. Being silent is about the engine's clock, and while the engine was down it heard
nothing: that time is not the devices' silence. Both timers hand their state out
(``snapshot``: plain data) and take it back (``restore``); on the first refresh after a
restart every known device's last sign of life moves forward by the outage (the time from
the last checkpoint to the restart), so a device heard just before the stop gets its whole
limit again, while one that was already silent for hours before it keeps those hours. A
device the snapshot does not know (a crash before the first checkpoint, a database restored
from elsewhere) is seeded the same way from the registry's last-seen time (``Place``), with
the newest last-seen of its kind standing for when the engine stopped hearing; one never
heard from at all counts from the first tick. No restart pages everyone.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from alerts.incidents import Severity, Signal
from alerts.rules.base import Place, Rule, RuleContext
from devices.drill import is_drill
from devices.messages import Offline
from devices.reading import Reading

_ONLINE, _HELD, _OFFLINE, _IN_STORM = 0, 1, 2, 3  # HELD: overdue, waiting storm_window_s to see whether a storm forms
_NEVER = np.iinfo(np.int64).max
STORM_UPDATE_EVERY_MS = 60_000  # how often a storm incident is told how many devices are back


def duration_zh(ms: int) -> str:
    s = ms / 1000
    if s < 120:
        return f"{s:.0f} 秒"
    if s < 2 * 3600:
        return f"{s / 60:.0f} 分钟"
    return f"{round(s / 3600, 1):g} 小时"


def pack(a: npt.NDArray[Any]) -> dict[str, str]:
    """A numpy array as plain data: its dtype and its bytes in base64 (a street's 50,000 devices in a millisecond)."""
    return {"dtype": a.dtype.str, "b64": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")}


def unpack(data: Mapping[str, str]) -> npt.NDArray[Any]:
    return np.frombuffer(base64.b64decode(data["b64"]), dtype=np.dtype(data["dtype"])).copy()


def _shifted(last_ms: int, saved_ms: int, now_ms: int) -> int:
    """A last sign of life moved forward by the time the engine was not listening (never past now)."""
    return min(now_ms, last_ms + max(0, now_ms - saved_ms))


class DeadMan(Rule):
    """Devices of one kind that stopped reporting (module docstring). Subclasses set the kind and the words.

    The population (``ctx.devices``) is re-read every ``REFRESH_EVERY_MS``; between refreshes a
    tick costs one comparison unless some device's deadline has passed, and then one
    vectorised pass over the population's deadlines.
    """

    KIND: ClassVar[str] = ""
    HEARTBEAT_MS: ClassVar[int] = 0
    NOUN: ClassVar[str] = "设备"  # 烟感探测器, 充电站 …
    ADVICE: ClassVar[str] = "请检查设备"  # what to do about one offline device
    OFFLINE_SEVERITY: ClassVar[Severity] = Severity.WARNING
    REFRESH_EVERY_MS = 60_000
    # A device never heard from belongs to its registered street, else the street most devices
    # are heard from, else this one.
    DEFAULT_STREET = "wanli"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.KIND:
            cls.kinds = frozenset({cls.KIND})

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
        self._heard_since_tick: dict[str, tuple[int, str]] = {}  # device → (when, street), folded in at the tick
        self._unindexed: dict[str, tuple[int, int]] = {}  # heard from, not in the population yet → (seen, street)
        self._storm_last_ms: dict[int, int] = {}  # street → when a device last joined its storm
        self._storm_size: dict[int, int] = {}  # street → devices in its current storm
        self._storm_back: dict[int, int] = {}  # street → how many of its storm's devices reported again
        self._storm_told: dict[int, tuple[int, int]] = {}  # street → (when, how many back) its incident was last told
        self._restored: Mapping[str, Any] | None = None  # a snapshot waiting for the first refresh
        self._last_tick_ms = 0

    # readings: every one but the broker's last will is a sign of life

    def sign_of_life(self, reading: Reading) -> bool:
        return not isinstance(reading.message, Offline)  # the broker speaking for a lost connection, not the device

    notes_only = True  # the engine hands a batch's readings to ``note`` at once (alerts/rules/hearing.py)

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        # The hot path: noted here, folded into the arrays in one vectorised step at the next tick.
        if self.sign_of_life(reading):
            self._heard_since_tick[reading.device_id] = (now_ms, reading.street)
        return []

    def note(self, readings: Sequence[Reading], ctx: RuleContext, now_ms: int) -> None:
        heard, alive = self._heard_since_tick, self.sign_of_life
        if type(self).sign_of_life is DeadMan.sign_of_life:  # this class's sign of life, inline: every batch
            offline, at = Offline, {}  # one (when, street) a street: the same values, not a tuple a reading
            for reading in readings:
                if not isinstance(reading.message, offline):
                    street = reading.street
                    heard[reading.device_id] = at.get(street) or at.setdefault(street, (now_ms, street))
            return
        for reading in readings:
            if alive(reading):
                heard[reading.device_id] = (now_ms, reading.street)

    def _fold_heard(self) -> None:
        """Everything heard since the last tick: back online, deadlines moved, storms told who returned."""
        if not self._heard_since_tick:
            return
        heard, self._heard_since_tick = self._heard_since_tick, {}
        slots, at, streets = [], [], []
        for device, (at_ms, street) in heard.items():
            slot = self._slot.get(device)
            if slot is None:
                self._unindexed[device] = (at_ms, self._code(street))
                continue
            slots.append(slot)
            at.append(at_ms)
            streets.append(self._code(street))
        if slots:
            self._heard(np.array(slots, np.int64), np.array(at, np.int64), np.array(streets, np.int32))

    def _heard(self, slots: npt.NDArray[np.int64], at_ms: npt.NDArray[np.int64], streets: npt.NDArray[np.int32]) -> None:
        returning = slots[self._state[slots] == _IN_STORM]
        if returning.size:
            for home, n in zip(*np.unique(self._street[returning], return_counts=True), strict=True):
                self._storm_back[int(home)] = self._storm_back.get(int(home), 0) + int(n)
        # never seen: the placeholder (when the watch began) gives way to the real time
        seen = np.where(self._seen[slots], np.maximum(self._last_seen[slots], at_ms), at_ms)
        self._last_seen[slots] = seen
        self._seen[slots] = True
        self._street[slots] = streets
        self._state[slots] = _ONLINE
        deadline = seen + self._limit_ms[slots]
        self._deadline[slots] = deadline
        self._next_due_ms = min(self._next_due_ms, int(deadline.min()))

    # ticks

    def on_tick(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        self._last_tick_ms = now_ms
        if now_ms >= self._next_refresh_ms:
            self._refresh(ctx, now_ms)
        self._fold_heard()
        if now_ms > self._next_due_ms:
            overdue = np.flatnonzero(self._deadline < now_ms)
            self._state[overdue] = _HELD
            self._overdue_ms[overdue] = now_ms
            self._deadline[overdue] = _NEVER
            self._any_held |= overdue.size > 0
            self._next_due_ms = int(self._deadline.min()) if self._deadline.size else _NEVER
        signals = self._settle_held(ctx, now_ms) if self._any_held else []
        if self._storm_back:
            signals += self._storms_returning(now_ms)
        return signals

    def _threshold(self, ctx: RuleContext, name: str, device_id: str) -> float:
        return ctx.threshold(self.KIND, name, device_id)

    def _settle_held(self, ctx: RuleContext, now_ms: int) -> list[Signal]:
        """Held devices join their street's storm, or, held a full window without one, go offline on their own."""
        held = np.flatnonzero(self._state == _HELD)
        if held.size == 0:
            self._any_held = False
            return []
        window_ms = int(self._threshold(ctx, "storm_window_s", "") * 1000)  # street-wide: the kind's (no device's) value
        storm_count = self._threshold(ctx, "storm_count", "")
        streets = self._streets_resolved()
        went_silent = ((self._state == _HELD) | (self._state == _IN_STORM)) & (self._overdue_ms > now_ms - window_ms)
        late = self._late(now_ms)
        per_street = np.bincount(streets[went_silent | late], minlength=len(self._streets))
        late_per_street = np.bincount(streets[late], minlength=len(self._streets))
        signals: list[Signal] = []
        for street in np.unique(streets[held]).tolist():
            members = held[streets[held] == street]
            last_joined = self._storm_last_ms.get(street)
            ongoing = last_joined is not None and now_ms - last_joined <= window_ms
            if ongoing or per_street[street] > storm_count:
                signals.append(self._storm(street, members, int(late_per_street[street]), storm_count, window_ms,
                                           now_ms))
                continue
            due = members[self._overdue_ms[members] <= now_ms - window_ms]
            self._state[due] = _OFFLINE
            signals.extend(self._offline(i, ctx, now_ms) for i in due.tolist())
        return signals

    def _late(self, now_ms: int) -> npt.NDArray[np.bool_]:
        """Devices not yet overdue that have already missed heartbeats: silent for more than their limit less half a
        heartbeat, and at least one and a half heartbeats (so one lost heartbeat packet alone never counts).

        Why they count towards a storm: in an outage every device stops at once, but each goes overdue only at its own
        last heartbeat plus its limit, so the overdue ones trickle in over a whole heartbeat interval (four hours for
        smoke detectors: a thousand detectors are four a minute, never fifty in five minutes). The devices that are
        late but not yet overdue show the outage at the first overdue one. In normal times a device is late only
        after missing all but its last heartbeat before the limit, which few are at once.
        """
        silent = now_ms - self._last_seen
        late_after = np.maximum(self._limit_ms - self.HEARTBEAT_MS // 2, self.HEARTBEAT_MS * 3 // 2)
        return (self._state == _ONLINE) & (silent > late_after)

    def _storm(self, street: int, members: npt.NDArray[np.intp], late: int, storm_count: float, window_ms: int,
               now_ms: int) -> Signal:
        self._state[members] = _IN_STORM
        self._street[members] = street  # a storm member's street is fixed: its return counts for this storm
        self._storm_last_ms[street] = now_ms
        size = self._storm_size[street] = self._storm_size.get(street, 0) + members.size
        ids = sorted(self._ids[i] for i in members.tolist())
        name = self._streets[street]
        back = self._storm_back.get(street, 0)
        still = f"（其中 {back} 个已恢复）" if back else ""
        coming = f"，另有 {late} 个已错过多次心跳、即将超时" if late else ""
        return Signal(ids[0], self.KIND, "mass_offline", "maintenance", Severity.HIGH,
                      f"大面积{self.NOUN}离线（疑似网络或供电中断）", now_ms,
                      f"街道 {name}：{size} 个{self.NOUN}相继失联{still}{coming}（{duration_zh(window_ms)}内超过"
                      f" {storm_count:g} 个失联或即将超时即视为成片离线），疑似网络或供电大面积中断，请联系运营商和物业排查；"
                      f"这些{self.NOUN}不再逐个告警，恢复上报后自动解除离线",
                      scope=f"street:{name}", members=tuple(ids))

    def _storms_returning(self, now_ms: int) -> list[Signal]:
        """Tell each storm incident how many of its devices are back; once all are, lower it to a warning."""
        signals = []
        for street in list(self._storm_back):
            size = self._storm_size.get(street)
            if size is None:
                del self._storm_back[street]
                continue
            still = int(np.count_nonzero((self._state == _IN_STORM) & (self._street == street)))
            name = self._streets[street]
            key_device = next((self._ids[i] for i in np.flatnonzero(self._street == street)[:1].tolist()), "")
            if still == 0:
                for gone in (self._storm_size, self._storm_back, self._storm_last_ms, self._storm_told):
                    gone.pop(street, None)
                signals.append(Signal(key_device, self.KIND, "mass_offline", "maintenance", Severity.WARNING,
                                      f"大面积{self.NOUN}离线：已全部恢复", now_ms,
                                      f"街道 {name}：成片离线的 {size} 个{self.NOUN}已全部恢复上报；"
                                      "请查明中断原因（网络、供电）并核查后结案",
                                      scope=f"street:{name}", downgrade=True, update_only=True))
                continue
            told_ms, told_back = self._storm_told.get(street, (0, 0))
            if size - still != told_back and now_ms - told_ms >= STORM_UPDATE_EVERY_MS:
                self._storm_told[street] = (now_ms, size - still)
                signals.append(Signal(key_device, self.KIND, "mass_offline", "maintenance", Severity.HIGH,
                                      f"大面积{self.NOUN}离线（疑似网络或供电中断）", now_ms,
                                      f"街道 {name}：成片离线的 {size} 个{self.NOUN}中已有 {size - still} 个恢复上报，"
                                      f"仍有 {still} 个离线；请继续排查网络或供电",
                                      scope=f"street:{name}", update_only=True))
        return signals

    def _offline(self, i: int, ctx: RuleContext, now_ms: int) -> Signal:
        device = self._ids[i]
        silent = duration_zh(now_ms - int(self._last_seen[i]))
        beats = self._threshold(ctx, "offline_after_heartbeats", device)
        since = f"已 {silent}没有任何上报" if self._seen[i] else f"自告警引擎开始监视（{silent}前）以来没有任何上报"
        return Signal(device, self.KIND, "offline", "maintenance", self.OFFLINE_SEVERITY, f"{self.NOUN}离线", now_ms,
                      f"{self.NOUN} {device} {since}（心跳每 {duration_zh(self.HEARTBEAT_MS)}一次，已超过 {beats:g} 个周期）："
                      f"{self.ADVICE}")

    def _streets_resolved(self) -> npt.NDArray[np.int32]:
        """Every slot's street; one never heard from gets the street most devices are heard from."""
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
        """Re-read the registered devices: newcomers count from now, the retired are forgotten."""
        self._next_refresh_ms = now_ms + self.REFRESH_EVERY_MS
        # A drill's devices are never watched for silence, nor counted in a street's mass offline (devices/drill.py).
        places: Sequence[Place] = [p for p in ctx.devices(self.KIND) if not is_drill(p.device_id)]
        n = len(places)
        ids = [p.device_id for p in places]
        buildings = [p.building_id for p in places]
        if ids == self._ids and buildings == self._buildings and self._restored is None:
            self._merge_unindexed()  # the usual minute: nobody registered, moved or retired
            return
        old = np.fromiter((self._slot.get(d, -1) for d in ids), np.int64, n)
        kept = np.flatnonzero(old >= 0)
        src = old[kept]

        last_seen = np.full(n, now_ms, np.int64)
        seen = np.zeros(n, np.bool_)
        state = np.full(n, _ONLINE, np.int8)
        overdue = np.zeros(n, np.int64)
        street = np.fromiter((self._code(p.street_id) if p.street_id else -1 for p in places), np.int32, n)
        limit = np.full(n, -1, np.int64)
        last_seen[kept], seen[kept], state[kept] = self._last_seen[src], self._seen[src], self._state[src]
        overdue[kept], limit[kept] = self._overdue_ms[src], self._limit_ms[src]
        known_street = self._street[src]
        street[kept] = np.where(known_street >= 0, known_street, street[kept])
        # Thresholds are looked up again only where they may have changed: new devices and moved ones.
        old_buildings = self._buildings
        for i, j in zip(kept.tolist(), src.tolist(), strict=True):
            if old_buildings[j] != buildings[i]:
                limit[i] = -1
        for i in np.flatnonzero(limit < 0).tolist():
            limit[i] = int(self._threshold(ctx, "offline_after_heartbeats", ids[i]) * self.HEARTBEAT_MS)

        self._ids, self._buildings, self._slot = ids, buildings, {d: i for i, d in enumerate(ids)}
        self._last_seen, self._seen, self._state, self._overdue_ms = last_seen, seen, state, overdue
        self._street, self._limit_ms = street, limit
        if self._restored is not None:
            self._apply_restored(places, now_ms)
        self._deadline = np.where(self._state == _ONLINE, self._last_seen + self._limit_ms, _NEVER)
        self._next_due_ms = int(self._deadline.min()) if n else _NEVER
        self._any_held = bool((self._state == _HELD).any())
        self._merge_unindexed()

    def _merge_unindexed(self) -> None:
        found = [(self._slot[d], at_ms, code) for d, (at_ms, code) in self._unindexed.items() if d in self._slot]
        self._unindexed.clear()
        if found:
            slots, at, codes = zip(*found, strict=True)
            self._heard(np.array(slots, np.int64), np.array(at, np.int64), np.array(codes, np.int32))

    # restarts (module docstring)

    def snapshot(self) -> dict[str, Any] | None:
        self._fold_heard()
        if not self._ids:
            return None
        return {
            "saved_ms": self._last_tick_ms, "streets": list(self._streets), "ids": "\n".join(self._ids),
            "last_seen": pack(self._last_seen), "seen": pack(self._seen), "state": pack(self._state),
            "overdue": pack(self._overdue_ms), "street": pack(self._street),
            "storms": [[self._streets[s], self._storm_last_ms.get(s, 0), size, self._storm_back.get(s, 0)]
                       for s, size in self._storm_size.items()],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        self._restored = state
        self._next_refresh_ms = 0

    def _apply_restored(self, places: Sequence[Place], now_ms: int) -> None:
        snap, self._restored = self._restored or {}, None
        saved_ms = int(snap.get("saved_ms", now_ms))
        streets = np.array([self._code(s) for s in snap.get("streets", [])] or [-1], np.int32)
        ids = snap["ids"].split("\n") if snap.get("ids") else []
        src = np.fromiter((j for j, d in enumerate(ids) if d in self._slot), np.int64)  # not retired meanwhile
        dst = np.fromiter((self._slot[ids[j]] for j in src.tolist()), np.int64, src.size)
        shift = max(0, now_ms - saved_ms)
        if src.size:
            self._last_seen[dst] = np.minimum(unpack(snap["last_seen"])[src] + shift, now_ms)
            self._seen[dst] = unpack(snap["seen"])[src]
            self._state[dst] = unpack(snap["state"])[src]
            self._overdue_ms[dst] = np.minimum(unpack(snap["overdue"])[src] + shift, now_ms)
            street = unpack(snap["street"])[src]
            self._street[dst] = np.where(street >= 0, streets[np.maximum(street, 0)], self._street[dst])
        known = {ids[j] for j in src.tolist()}
        for name, last_joined, size, back in snap.get("storms", []):
            code = self._code(name)
            self._storm_last_ms[code] = _shifted(int(last_joined), saved_ms, now_ms)
            self._storm_size[code], self._storm_back[code] = int(size), int(back)
            self._storm_told[code] = (now_ms, int(back))
        self.seed_from_places([p for p in places if p.device_id not in known], now_ms)

    def seed_from_places(self, places: Sequence[Place], now_ms: int) -> None:
        """Devices the snapshot does not know: their registered last-seen time, the outage not counted."""
        heard = [p for p in places if p.last_seen_ms is not None]
        if not heard:
            return
        stopped_ms = max(int(p.last_seen_ms) for p in heard)  # type: ignore[arg-type] - filtered above
        for p in heard:
            i = self._slot[p.device_id]
            self._last_seen[i] = _shifted(int(p.last_seen_ms), stopped_ms, now_ms)  # type: ignore[arg-type]
            self._seen[i] = True


class SilenceWatch:
    """A plain dead-man timer over a population of devices, in numpy arrays: who has been silent too long.

    ``seen`` records a sign of life; ``follow`` follows the registered population (a device that
    has never been seen counts from the first time the watch sees it registered, so a restart
    does not declare everyone silent); ``overdue`` names each device once per silence;
    ``snapshot`` / ``restore`` carry it across a restart (module docstring).

    The population is re-read at most every ``REFRESH_EVERY_MS``: reading it walks the whole
    registry, and silences are counted in minutes and hours, so a device registered a minute
    ago can wait a minute to be watched.
    """

    REFRESH_EVERY_MS = 60_000

    def __init__(self) -> None:
        self._next_refresh_ms: int | None = None
        self.ids: list[str] = []
        self._index: dict[str, int] = {}
        self.last_ms = np.empty(0, dtype=np.int64)
        self.never_seen = np.empty(0, dtype=bool)
        self._limit_ms = np.empty(0, dtype=np.int64)
        self._raised = np.empty(0, dtype=bool)
        self._early: dict[str, int] = {}  # seen before the watch knew the device was registered
        self._restored: Mapping[str, Any] | None = None
        self._last_now_ms = 0

    def seen(self, device_id: str, at_ms: int) -> None:
        i = self._index.get(device_id)
        if i is None:
            self._early[device_id] = max(at_ms, self._early.get(device_id, at_ms))
            return
        self.last_ms[i] = max(self.last_ms[i], at_ms)
        self.never_seen[i] = False
        self._raised[i] = False

    def seen_all(self, device_ids: Sequence[str], at_ms: int) -> None:
        """``seen`` for many devices at one time, in one vectorised step."""
        index, slots = self._index, []
        for device_id in device_ids:
            i = index.get(device_id)
            if i is None:
                self._early[device_id] = max(at_ms, self._early.get(device_id, at_ms))
            else:
                slots.append(i)
        if slots:
            at = np.array(slots, np.intp)
            self.last_ms[at] = np.maximum(self.last_ms[at], at_ms)
            self.never_seen[at] = False
            self._raised[at] = False

    def follow(self, population: Callable[[], Sequence[Place]], limit_ms: Callable[[str], float], now_ms: int) -> None:
        self._last_now_ms = now_ms
        if self._next_refresh_ms is not None and now_ms < self._next_refresh_ms:
            return
        self._next_refresh_ms = now_ms + self.REFRESH_EVERY_MS
        ids = [p.device_id for p in population()]
        if ids != self.ids or self._restored is not None:
            last = np.full(len(ids), now_ms, dtype=np.int64)
            never = np.ones(len(ids), dtype=bool)
            raised = np.zeros(len(ids), dtype=bool)
            snap, self._restored = self._restored, None
            if snap is not None:
                shift = max(0, now_ms - int(snap["saved_ms"]))
                self._index = {d: j for j, d in enumerate(snap["ids"].split("\n") if snap["ids"] else [])}
                self.last_ms = np.minimum(unpack(snap["last_ms"]) + shift, now_ms)
                self.never_seen = unpack(snap["never_seen"])
                self._raised = unpack(snap["raised"])
            for j, device_id in enumerate(ids):
                i = self._index.get(device_id)
                if i is not None:
                    last[j], never[j], raised[j] = self.last_ms[i], self.never_seen[i], self._raised[i]
                if device_id in self._early:
                    last[j], never[j], raised[j] = max(self._early[device_id], int(last[j])), False, False
            self.ids, self._index = ids, {d: j for j, d in enumerate(ids)}
            self.last_ms, self.never_seen, self._raised = last, never, raised
            self._limit_ms = np.array([limit_ms(d) for d in ids], dtype=np.int64)
        self._early.clear()

    def overdue(self, now_ms: int) -> npt.NDArray[np.intp]:
        """Indices of the devices silent for longer than their limit, each once until it is seen again."""
        late = (now_ms - self.last_ms > self._limit_ms) & ~self._raised
        self._raised |= late
        return np.flatnonzero(late)

    def last_of(self, device_id: str) -> int | None:
        i = self._index.get(device_id)
        return None if i is None else int(self.last_ms[i])

    def unraise(self, i: int) -> None:
        """Ask about this device again at the next tick (its overdue was not acted on)."""
        self._raised[i] = False

    def snapshot(self) -> dict[str, Any] | None:
        if not self.ids:
            return None
        return {"saved_ms": self._last_now_ms, "ids": "\n".join(self.ids), "last_ms": pack(self.last_ms),
                "never_seen": pack(self.never_seen), "raised": pack(self._raised)}

    def restore(self, state: Mapping[str, Any]) -> None:
        self._restored = state
        self._next_refresh_ms = None
