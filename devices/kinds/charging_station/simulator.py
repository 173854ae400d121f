"""An e-bike charging station: ports whose sessions follow a charger's curve, and what goes wrong.

Every minute (the kind's cadence) a ``station_status`` snapshot of every port:

- arrivals follow the hour of day (riders plug in after work, Shanghai time) and a session
  charges a 48 V pack: constant current at about 180 W from the mains until 85 % full, then
  a tapering constant-voltage phase; a healthy port cuts the power when the pack is full and
  the rider unplugs hours later;
- port temperature follows load with a lag: ambient plus about 0.07 °C per watt, with a
  ten-minute time constant;
- ``keep_power_on_full(port)``: a stuck relay goes on feeding a full pack (about 60 W);
- ``thermal_runaway(port)``: the cell overheats, the port temperature climbs a few degrees
  a minute and faster, and past about 110 °C the shed's smoke sensor goes off
  (``smoke_detected`` and ``smoke: true`` in the snapshots).
``session_started`` / ``session_ended`` events mark sessions as real stations do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from devices.topics import MessageClass
from simulators.clock import local_hour
from simulators.devices.base import LoadStream, Publication, SimulatedDevice

MAINS_V = 220.0
CC_POWER_W = 180.0
PACK_WH = 960.0  # 48 V × 20 Ah
CV_FROM = 0.85
STUCK_RELAY_W = 60.0
DEG_PER_W = 0.07
TAU_S = 600.0
SMOKE_AT_C = 110.0


@dataclass
class PortState:
    port: int
    state: str = "idle"
    energy_wh: float = 0.0
    session_s: int = 0
    temperature_c: float = 22.0
    soc: float = 0.0
    stuck_relay: bool = False
    runaway_s: float | None = None  # seconds into a thermal runaway, None: none

    @property
    def power_w(self) -> float:
        if self.state == "charging":
            return CC_POWER_W if self.soc < CV_FROM else max(15.0, CC_POWER_W * (1 - self.soc) / (1 - CV_FROM))
        if self.state == "full" and self.stuck_relay:
            return STUCK_RELAY_W
        return 0.0


def _arrivals_per_hour(hour: float) -> float:
    """Chance per port per hour that a rider plugs in: the evening peak after work, little at night."""
    if 18 <= hour < 23:
        return 0.25
    if 11 <= hour < 14:
        return 0.08
    if 7 <= hour < 18:
        return 0.05
    return 0.02


@dataclass
class ChargingStationSim(SimulatedDevice):
    kind: str = "charging_station"
    LOAD_STREAMS: ClassVar[dict[str, LoadStream]] = {
        "charging_status": LoadStream(lambda d, t: d.minute_status(t), weight=0.04, street_weight=0.28),
    }
    port_count: int = 10
    ambient_c: float = 22.0
    ports: list[PortState] = field(default_factory=list)
    mains_power: bool = True
    smoke_on: bool = False  # the shed's smoke sensor
    _last_ms: int | None = field(default=None, init=False, repr=False)
    _events: list[Publication] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.ports:
            self.ports = [PortState(p, temperature_c=self.ambient_c) for p in range(1, self.port_count + 1)]

    def port(self, number: int) -> PortState:
        return self.ports[number - 1]

    def plug_in(self, number: int, soc: float = 0.2, now_ms: int | None = None) -> None:
        p = self.port(number)
        p.state, p.energy_wh, p.session_s, p.soc = "charging", 0.0, 0, soc
        if now_ms is not None:
            self._events.append(self.publication(MessageClass.EVENT, "session_started", now_ms, port=number))

    def keep_power_on_full(self, number: int) -> None:
        """The port's relay sticks: a full pack keeps being fed."""
        self.port(number).stuck_relay = True

    def thermal_runaway(self, number: int) -> None:
        p = self.port(number)
        if p.state == "idle":
            self.plug_in(number, soc=0.6)
        p.runaway_s = 0.0

    def step(self, seconds: float, now_ms: int | None = None) -> None:
        """Advance sessions, temperatures and any runaway by ``seconds`` of simulated time."""
        hour = local_hour(now_ms) if now_ms is not None else 19.0
        arrive = 1 - math.exp(-_arrivals_per_hour(hour) * seconds / 3600)
        leave = 1 - math.exp(-0.3 * seconds / 3600)
        alpha = 1 - math.exp(-seconds / TAU_S)
        for p in self.ports:
            if p.runaway_s is not None:
                p.runaway_s += seconds
                # a few degrees a minute at first, then faster as cells vent and ignite
                rate_c_per_s = (3.0 + 0.04 * p.runaway_s) / 60
                p.temperature_c = min(600.0, p.temperature_c + rate_c_per_s * seconds)
                if p.temperature_c >= SMOKE_AT_C and not self.smoke_on:
                    self.smoke_on = True
                    if now_ms is not None:
                        self._events.append(self.publication(MessageClass.EVENT, "smoke_detected", now_ms, level=3.5))
                continue
            if p.state == "idle" and self.rng.random() < arrive:
                self.plug_in(p.port, soc=self.rng.uniform(0.1, 0.5), now_ms=now_ms)
            elif p.state == "charging":
                p.session_s += int(seconds)
                wh = p.power_w * seconds / 3600
                p.energy_wh += wh
                p.soc = min(1.0, p.soc + wh * 0.92 / PACK_WH)
                if p.soc >= 0.995:
                    p.state = "full"
                    if now_ms is not None:
                        self._events.append(self.publication(MessageClass.EVENT, "session_ended", now_ms, port=p.port,
                                                             energy_wh=round(p.energy_wh, 1), duration_s=p.session_s,
                                                             reason="full"))
            elif p.state == "full":
                p.session_s += int(seconds) if p.stuck_relay else 0
                if not p.stuck_relay and self.rng.random() < leave:
                    p.state, p.energy_wh, p.session_s, p.soc = "idle", 0.0, 0, 0.0
            target = self.ambient_c + DEG_PER_W * p.power_w
            p.temperature_c += (target - p.temperature_c) * alpha

    def periodic(self, at_ms: int) -> list[Publication]:
        seconds = (at_ms - self._last_ms) / 1000 if self._last_ms is not None else 0.0
        self._last_ms = at_ms
        if seconds > 0:
            self.step(seconds, at_ms)
        out, self._events = self._events, []
        return [*out, self.status(at_ms)]

    def minute_status(self, now_ms: int) -> Publication:
        """A minute of charging, then the station's snapshot (the load generator's charging stream)."""
        self.step(60.0)
        return self.status(now_ms)

    def status(self, now_ms: int) -> Publication:
        ports = []
        for p in self.ports:
            power = p.power_w
            noisy = round(power + self.rng.uniform(-3, 3), 1) if power else 0.0
            ports.append({
                "port": p.port, "state": p.state, "voltage_v": MAINS_V if power else 0.0,
                "current_a": round(noisy / MAINS_V, 3) if power else 0.0, "power_w": max(0.0, noisy),
                "energy_wh": round(p.energy_wh, 1), "temperature_c": round(p.temperature_c, 1), "session_s": p.session_s,
            })
        return self.publication(MessageClass.TELEMETRY, "station_status", now_ms, ambient_temp_c=self.ambient_c,
                                smoke=self.smoke_on, mains_power=self.mains_power, ports=ports)

    def smoke(self, now_ms: int) -> Publication:
        """The shed's smoke sensor goes off."""
        self.smoke_on = True
        return self.publication(MessageClass.EVENT, "smoke_detected", now_ms, level=3.0)

    def power_lost(self, now_ms: int) -> Publication:
        self.mains_power = False
        return self.publication(MessageClass.EVENT, "power_lost", now_ms)
