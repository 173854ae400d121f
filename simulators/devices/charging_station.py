"""An e-bike charging station: ports start and finish sessions; port temperature follows load."""

from __future__ import annotations

from dataclasses import dataclass, field

from devices.topics import MessageClass
from simulators.devices.base import Publication, SimulatedDevice


@dataclass
class PortState:
    port: int
    state: str = "idle"
    energy_wh: float = 0.0
    session_s: int = 0
    temperature_c: float = 22.0


@dataclass
class ChargingStationSim(SimulatedDevice):
    kind: str = "charging_station"
    port_count: int = 10
    ambient_c: float = 22.0
    ports: list[PortState] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.ports:
            self.ports = [PortState(p) for p in range(1, self.port_count + 1)]

    def step(self, seconds: float) -> None:
        """Advance charging sessions by ``seconds`` of simulated time."""
        for p in self.ports:
            if p.state == "idle" and self.rng.random() < 0.02:
                p.state, p.energy_wh, p.session_s = "charging", 0.0, 0
            elif p.state == "charging":
                p.session_s += int(seconds)
                p.energy_wh += 180.0 * seconds / 3600
                if p.energy_wh > 600 or self.rng.random() < 0.005:
                    p.state = "full"
            elif p.state == "full" and self.rng.random() < 0.05:
                p.state = "idle"
            target = self.ambient_c + (14.0 if p.state == "charging" else 0.0)
            p.temperature_c += (target - p.temperature_c) * min(1.0, seconds / 600)

    def status(self, now_ms: int) -> Publication:
        ports = []
        for p in self.ports:
            charging = p.state == "charging"
            ports.append({
                "port": p.port, "state": p.state, "voltage_v": 220.0 if charging else 0.0,
                "current_a": round(0.8 + self.rng.uniform(-0.05, 0.05), 3) if charging else 0.0,
                "power_w": round(180 + self.rng.uniform(-10, 10), 1) if charging else 0.0,
                "energy_wh": round(p.energy_wh, 1), "temperature_c": round(p.temperature_c, 1), "session_s": p.session_s,
            })
        return self.publication(MessageClass.TELEMETRY, "station_status", now_ms, ambient_temp_c=self.ambient_c,
                                smoke=False, mains_power=True, ports=ports)

    def smoke(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.EVENT, "smoke_detected", now_ms, level=3.0)
