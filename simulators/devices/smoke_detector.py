"""A smoke detector: heartbeats with a slowly draining battery; alarms on demand."""

from __future__ import annotations

from dataclasses import dataclass

from devices.topics import MessageClass
from simulators.devices.base import Publication, SimulatedDevice


@dataclass
class SmokeDetectorSim(SimulatedDevice):
    kind: str = "smoke_detector"
    battery_pct: float = 100.0

    def heartbeat(self, now_ms: int) -> Publication:
        self.battery_pct = max(0.0, self.battery_pct - self.rng.uniform(0.0, 0.02))
        return self.publication(MessageClass.TELEMETRY, "heartbeat", now_ms, battery_pct=round(self.battery_pct, 2),
                                rssi_dbm=self.rng.randint(-105, -70), smoke_density=round(self.rng.uniform(0, 0.05), 3),
                                temperature_c=round(self.rng.uniform(18, 26), 1))

    def alarm(self, now_ms: int, smoke_density: float = 0.25) -> Publication:
        return self.publication(MessageClass.EVENT, "alarm", now_ms, smoke_density=smoke_density,
                                temperature_c=round(self.rng.uniform(30, 45), 1))

    def alarm_cleared(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.EVENT, "alarm_cleared", now_ms, smoke_density=0.01)
