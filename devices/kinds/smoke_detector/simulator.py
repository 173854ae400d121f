"""A smoke detector (GB 20517): heartbeats every four hours, a battery that drains, and smoke.

- heartbeat: battery (a ten-year lithium cell loses about 0.03 % a day; a weak one far
  more), signal strength wandering around the detector's own mean (NB-IoT in a stairwell
  is poor), background smoke density and room temperature;
- ``low_battery`` once when the battery falls below 20 %, as real detectors do;
- ``cook``: steam or frying smoke sets it off, the resident may press mute, and the alarm
  clears by itself a few minutes later;
- ``burn``: a real fire, the alarm repeating every minute with smoke and heat rising until
  ``extinguish``;
- ``fault``, ``tamper``, ``self_test`` on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from devices.topics import MessageClass
from simulators.devices.base import LoadStream, Publication, SimulatedDevice, random_walk

LOW_BATTERY_PCT = 20.0
DAY_MS = 86_400_000


@dataclass
class SmokeDetectorSim(SimulatedDevice):
    kind: str = "smoke_detector"
    LOAD_STREAMS: ClassVar[dict[str, LoadStream]] = {
        "smoke_heartbeat": LoadStream(lambda d, t: d.heartbeat(t), weight=0.70, street_weight=0.34),
        "smoke_alarm": LoadStream(lambda d, t: d.alarm(t), weight=0.001, street_weight=0.001),  # a few among thousands
    }
    battery_pct: float = 100.0
    drain_pct_per_day: float = 0.03
    rssi_mean_dbm: float = field(default=0.0)
    rssi_dbm: float = field(default=0.0, init=False)
    room_temp_c: float = 22.0
    burning_since_ms: int | None = field(default=None, init=False)
    _last_drain_ms: int | None = field(default=None, init=False, repr=False)
    _low_battery_told: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.rssi_mean_dbm:
            self.rssi_mean_dbm = self.rng.uniform(-105, -75)
        self.rssi_dbm = self.rssi_mean_dbm

    def _drain(self, now_ms: int) -> None:
        if self._last_drain_ms is not None and now_ms > self._last_drain_ms:
            self.battery_pct = max(0.0, self.battery_pct - self.drain_pct_per_day * (now_ms - self._last_drain_ms) / DAY_MS)
        self._last_drain_ms = now_ms if self._last_drain_ms is None else max(self._last_drain_ms, now_ms)

    def periodic(self, at_ms: int) -> list[Publication]:
        out = [self.heartbeat(at_ms)]
        if self.battery_pct < LOW_BATTERY_PCT and not self._low_battery_told:
            self._low_battery_told = True
            out.append(self.publication(MessageClass.EVENT, "low_battery", at_ms, battery_pct=round(self.battery_pct, 1)))
        if self.battery_pct <= 0:
            self.silent = True  # a flat detector says nothing more, ever
        return out

    def heartbeat(self, now_ms: int) -> Publication:
        self._drain(now_ms)
        self.rssi_dbm = random_walk(self.rng, self.rssi_dbm, self.rssi_mean_dbm, 2.0, -120, -50)
        self.room_temp_c = random_walk(self.rng, self.room_temp_c, 22.0, 0.6, 12, 32)
        return self.publication(MessageClass.TELEMETRY, "heartbeat", now_ms, battery_pct=round(self.battery_pct, 2),
                                rssi_dbm=round(self.rssi_dbm), smoke_density=round(self.rng.uniform(0, 0.03), 3),
                                temperature_c=round(self.room_temp_c, 1))

    def alarm(self, now_ms: int, smoke_density: float = 0.25, temperature_c: float | None = None) -> Publication:
        temp = temperature_c if temperature_c is not None else round(self.rng.uniform(30, 45), 1)
        return self.publication(MessageClass.EVENT, "alarm", now_ms, smoke_density=smoke_density, temperature_c=temp)

    def alarm_cleared(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.EVENT, "alarm_cleared", now_ms, smoke_density=0.01)

    def silenced(self, now_ms: int, duration_s: int = 600) -> Publication:
        return self.publication(MessageClass.EVENT, "silenced", now_ms, duration_s=duration_s)

    def fault(self, now_ms: int, code: str = "E02", detail: str = "sensor chamber dirty") -> Publication:
        return self.publication(MessageClass.EVENT, "fault", now_ms, code=code, detail=detail)

    def tamper(self, now_ms: int, state: str = "removed") -> Publication:
        return self.publication(MessageClass.EVENT, "tamper", now_ms, state=state)

    def self_test(self, now_ms: int, passed: bool = True) -> Publication:
        return self.publication(MessageClass.EVENT, "self_test", now_ms, result="pass" if passed else "fail")

    # -- episodes -----------------------------------------------------------------------------------------------------

    def cook(self, start_ms: int, duration_s: float = 240.0, mute: bool = False) -> None:
        """Kitchen steam: an alarm some seconds in, perhaps muted, cleared by itself after ``duration_s``."""
        onset = start_ms + self.rng.randint(15_000, 45_000)
        density = round(self.rng.uniform(0.14, 0.2), 3)
        self.schedule(onset, lambda t: [self.alarm(t, density, round(self.room_temp_c + self.rng.uniform(2, 6), 1))])
        if mute:
            self.schedule(onset + self.rng.randint(10_000, 30_000), lambda t: [self.silenced(t, 600)])
        self.schedule(start_ms + int(duration_s * 1000), lambda t: [self.alarm_cleared(t)])

    def burn(self, start_ms: int, repeat_s: float = 60.0) -> None:
        """A real fire reaches the detector: the alarm repeats with smoke and heat rising until ``extinguish``."""
        self.burning_since_ms = start_ms

        def sound(t: int) -> list[Publication]:
            if self.burning_since_ms is None:
                return []
            minutes = (t - self.burning_since_ms) / 60_000
            self.schedule(t + int(repeat_s * 1000), sound)
            return [self.alarm(t, round(min(2.0, 0.2 + 0.15 * minutes), 3), round(min(350.0, 35 + 25 * minutes), 1))]

        self.schedule(start_ms, sound)

    def extinguish(self, now_ms: int) -> None:
        if self.burning_since_ms is not None:
            self.burning_since_ms = None
            self.schedule(now_ms, lambda t: [self.alarm_cleared(t)])
