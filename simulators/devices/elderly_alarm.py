"""A one-touch alarm: heartbeats, daily activity, presses and cancels on demand."""

from __future__ import annotations

from dataclasses import dataclass

from devices.topics import MessageClass
from simulators.devices.base import Publication, SimulatedDevice


@dataclass
class ElderlyAlarmSim(SimulatedDevice):
    kind: str = "elderly_alarm"
    battery_pct: float = 100.0

    def heartbeat(self, now_ms: int) -> Publication:
        self.battery_pct = max(0.0, self.battery_pct - self.rng.uniform(0.0, 0.01))
        return self.publication(MessageClass.TELEMETRY, "heartbeat", now_ms, battery_pct=round(self.battery_pct, 2),
                                rssi_dbm=self.rng.randint(-100, -60))

    def activity(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.TELEMETRY, "activity", now_ms,
                                source=self.rng.choice(["door", "water", "motion"]), count=self.rng.randint(1, 5))

    def press(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.EVENT, "press", now_ms)

    def cancel(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.EVENT, "cancel", now_ms)
