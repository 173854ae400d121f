"""A one-touch alarm (一键通) in the home of an elderly person living alone.

- heartbeat every hour with battery (a rechargeable unit loses about 1 % a day) and signal;
- ``activity`` from the home's door, water and motion sensors in waking hours (Shanghai
  time, about 06:30–22:00), every half hour to two hours, none at night;
- ``stop_activity``: the resident is unwell or away: heartbeats go on, activity stops
  (the days without activity the inactivity rule watches for);
- ``press`` / ``cancel`` / ``fall`` on demand, and ``press_then_cancel`` with the seconds
  a resident really takes to find the cancel button.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from devices.topics import MessageClass
from simulators.clock import local_hour
from simulators.devices.base import LoadStream, Publication, SimulatedDevice, random_walk

DAY_MS = 86_400_000
WAKE_H, SLEEP_H = 6.5, 22.0


@dataclass
class ElderlyAlarmSim(SimulatedDevice):
    kind: str = "elderly_alarm"
    LOAD_STREAMS: ClassVar[dict[str, LoadStream]] = {
        "elderly_heartbeat": LoadStream(lambda d, t: d.heartbeat(t), weight=0.08, street_weight=0.03),
        "elderly_activity": LoadStream(lambda d, t: d.activity(t), weight=0.08, street_weight=0.03),
    }
    battery_pct: float = 100.0
    drain_pct_per_day: float = 1.0
    active: bool = True  # the resident moves about the home
    rssi_dbm: float = field(default=-85.0, init=False)
    _last_drain_ms: int | None = field(default=None, init=False, repr=False)
    _low_battery_told: bool = field(default=False, init=False, repr=False)

    def on_start(self, now_ms: int) -> None:
        self.schedule(self._next_activity_ms(now_ms), self._activity_cycle)

    def _next_activity_ms(self, after_ms: int) -> int:
        t = after_ms + int(self.rng.uniform(0.5, 2.0) * 3_600_000)
        hour = local_hour(t)
        if hour < WAKE_H or hour >= SLEEP_H:  # asleep: the first sign of life is getting up
            wait_h = (WAKE_H - hour) % 24
            t += int((wait_h + self.rng.uniform(0, 0.75)) * 3_600_000)
        return t

    def _activity_cycle(self, at_ms: int) -> list[Publication]:
        self.schedule(self._next_activity_ms(at_ms), self._activity_cycle)
        return [self.activity(at_ms)] if self.active else []

    def periodic(self, at_ms: int) -> list[Publication]:
        out = [self.heartbeat(at_ms)]
        if self.battery_pct < 20 and not self._low_battery_told:
            self._low_battery_told = True
            out.append(self.publication(MessageClass.EVENT, "low_battery", at_ms, battery_pct=round(self.battery_pct, 1)))
        return out

    def heartbeat(self, now_ms: int) -> Publication:
        if self._last_drain_ms is not None and now_ms > self._last_drain_ms:
            self.battery_pct = max(0.0, self.battery_pct - self.drain_pct_per_day * (now_ms - self._last_drain_ms) / DAY_MS)
        self._last_drain_ms = now_ms
        self.rssi_dbm = random_walk(self.rng, self.rssi_dbm, -85.0, 2.0, -115, -55)
        return self.publication(MessageClass.TELEMETRY, "heartbeat", now_ms, battery_pct=round(self.battery_pct, 2),
                                rssi_dbm=round(self.rssi_dbm))

    def activity(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.TELEMETRY, "activity", now_ms,
                                source=self.rng.choice(["door", "water", "motion"]), count=self.rng.randint(1, 5))

    def stop_activity(self) -> None:
        self.active = False

    def press(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.EVENT, "press", now_ms)

    def cancel(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.EVENT, "cancel", now_ms)

    def fall(self, now_ms: int, confidence: float = 0.9) -> Publication:
        return self.publication(MessageClass.EVENT, "fall", now_ms, confidence=confidence)

    def press_then_cancel(self, now_ms: int, within_s: tuple[float, float] = (8.0, 25.0)) -> None:
        """A press by mistake, cancelled after the seconds it takes to find the button again."""
        self.schedule(now_ms, lambda t: [self.press(t)])
        self.schedule(now_ms + int(self.rng.uniform(*within_s) * 1000), lambda t: [self.cancel(t)])
