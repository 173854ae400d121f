"""A simulated building: a smoke detector in every unit, a charging station, a few one-touch alarms.

``BuildingSimulation`` is pure (what to publish at a given time); ``run_building`` is the
async shell that publishes it through MQTT with aiomqtt, the way the devices would.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field

import aiomqtt

from devices.hierarchy import Building
from devices.kinds.charging_station.simulator import ChargingStationSim
from devices.kinds.elderly_alarm.simulator import ElderlyAlarmSim
from devices.kinds.smoke_detector.simulator import SmokeDetectorSim
from devices.registry import DeviceRecord
from simulators.devices.base import Publication, SimulatedDevice
from foundation.background import Backoff
from foundation.service_clock import ClockMs, wall_ms

log = logging.getLogger(__name__)


@dataclass
class Placed:
    device: SimulatedDevice
    floor: int | None = None
    unit: str = ""
    next_heartbeat_ms: int = 0


def _code(building: Building) -> str:
    return building.id.upper().replace("-", "")


@dataclass
class BuildingSimulation:
    building: Building
    street: str = "wanli"
    seed: int = 0
    elderly_units: int = 3
    placed: list[Placed] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        b, code = self.building, _code(self.building)
        start_seq = wall_ms()  # a fresh run continues after any earlier one's numbers
        for floor in range(1, b.floors + 1):
            for u in range(1, b.units_per_floor + 1):
                unit = f"{floor:02d}{u:02d}"
                sim = SmokeDetectorSim(f"SD-{code}-{unit}", street=self.street, seed=self.seed, seq=start_seq)
                self.placed.append(Placed(sim, floor, unit))
        self.placed.append(Placed(ChargingStationSim(f"CS-{code}-01", street=self.street, seed=self.seed, seq=start_seq)))
        step = max(1, b.floors // max(1, self.elderly_units))
        for floor in range(step, b.floors + 1, step)[: self.elderly_units]:
            unit = f"{floor:02d}01"
            self.placed.append(Placed(ElderlyAlarmSim(f"EA-{code}-{unit}", street=self.street, seed=self.seed,
                                                      seq=start_seq), floor, unit))

    def records(self) -> list[DeviceRecord]:
        return [DeviceRecord(p.device.device_id, p.device.kind, self.street, self.building.id, p.floor, p.unit,
                             label=f"{self.building.name} {p.unit}".strip()) for p in self.placed]

    def random_alarm(self, now_ms: int) -> Publication:
        """A drill: one detector of the building, chosen by the seeded RNG, starts sounding."""
        return self._rng.choice(self.smoke_detectors()).alarm(now_ms)

    def smoke_detectors(self) -> list[SmokeDetectorSim]:
        return [p.device for p in self.placed if isinstance(p.device, SmokeDetectorSim)]

    def start(self, now_ms: int, heartbeat_ms: int) -> list[Publication]:
        """Every device comes online; heartbeats are staggered over one interval, as real ones drift apart."""
        n = len(self.placed)
        for i, p in enumerate(self.placed):
            p.next_heartbeat_ms = now_ms + (heartbeat_ms * i) // n
        return [p.device.online(now_ms) for p in self.placed]

    def due(self, now_ms: int, heartbeat_ms: int) -> list[Publication]:
        out = []
        for p in self.placed:
            if p.next_heartbeat_ms > now_ms:
                continue
            p.next_heartbeat_ms += heartbeat_ms
            d = p.device
            if isinstance(d, ChargingStationSim):
                d.step(heartbeat_ms / 1000)
                out.append(d.status(now_ms))
            elif isinstance(d, (SmokeDetectorSim, ElderlyAlarmSim)):
                out.append(d.heartbeat(now_ms))
        return out


async def run_building(
    sim: BuildingSimulation,
    host: str,
    port: int,
    *,
    heartbeat_s: float = 30.0,
    alarm_every_s: float = 0.0,
    stop: asyncio.Event,
    clock_ms: ClockMs = wall_ms,
) -> None:
    """Publish the building until ``stop`` is set, reconnecting with backoff if the broker goes away."""
    heartbeat_ms = int(heartbeat_s * 1000)
    started = False
    next_alarm_ms = clock_ms() + int(alarm_every_s * 1000) if alarm_every_s else None
    backoff = Backoff(1.0, 30.0)  # jittered: a street of simulated buildings does not come back in step
    while not stop.is_set():
        try:
            async with aiomqtt.Client(host, port, identifier=f"sim-{sim.building.id}") as client:
                backoff.reset()
                if not started:
                    for topic, payload in sim.start(clock_ms(), heartbeat_ms):
                        await client.publish(topic, payload, qos=1)
                    started = True
                while not stop.is_set():
                    now = clock_ms()
                    batch = sim.due(now, heartbeat_ms)
                    if next_alarm_ms is not None and now >= next_alarm_ms:
                        batch.append(sim.random_alarm(now))
                        next_alarm_ms = now + int(alarm_every_s * 1000)
                    for topic, payload in batch:
                        await client.publish(topic, payload, qos=1)
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=0.5)
                    except TimeoutError:
                        pass
        except aiomqtt.MqttError as exc:
            delay = backoff.next_s()
            log.warning("simulated building %s lost the broker (%s); retrying in %.0f s", sim.building.id, exc, delay)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
