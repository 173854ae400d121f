"""The load generator for benchmarks: a realistic mix of devices' messages, published fast.

Messages are built up front (a benchmark measures ingest, not JSON encoding in the
publisher) from a population of registered devices, by the same simulators the scenarios
use: mostly smoke detector heartbeats, charging station snapshots, one-touch alarm
heartbeats and activity, water meter readings, lift camera heartbeats, micro fire station
duty status, and a small share of events (alarms, e-bikes in lifts, hazard reports). Each
message carries ``ts`` as a fixed-width placeholder re-stamped cheaply at send time, so
publish-to-stored latency can be read from the stored points.

``publish`` sends them through ``simulators.publisher.MqttPublisher``: paho with a bounded
window of QoS 1 messages in flight (more than 65,535 unacknowledged messages wedges a
publisher), as fast as possible or at a target rate, and reports what it sent and what the
broker acknowledged, per kind.

Public functions used by ``wanli bench`` (keep their signatures): ``build_messages``,
``stamp``, ``publish``, ``PublishReport``, ``LoadMix``.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from devices.registry import DeviceRecord
from simulators.devices import SIMULATORS
from simulators.devices.base import Publication, SimulatedDevice
from simulators.devices.charging_station import ChargingStationSim
from simulators.publisher import BrokerAddress, MqttPublisher
from wanli.service_clock import wall_ms

TS_PLACEHOLDER = b'"ts":1000000000000'  # 13 digits, the same width as a real epoch-ms now
_PLACEHOLDER_MS = 1_000_000_000_000


@dataclass(frozen=True, slots=True)
class LoadMix:
    """Weights of the message mix (they need not sum to 1).

    The defaults are the mix ``wanli bench`` has always measured (heartbeats, some snapshots
    and activity, a few alarms); ``STREET_MIX`` is the street at its real cadences.
    """

    smoke_heartbeat: float = 0.70
    elderly_heartbeat: float = 0.08
    elderly_activity: float = 0.08
    charging_status: float = 0.04
    smoke_alarm: float = 0.001  # a real street: a few alarms among thousands of heartbeats
    water_reading: float = 0.0
    lift_heartbeat: float = 0.0
    fire_station_duty: float = 0.0
    ebike_in_lift: float = 0.0
    hazard_report: float = 0.0


# The generated street (50,615 devices) at the kinds' real cadences, as measured from the
# population simulation (docs/simulators.md): about 9 messages a second, a third of them
# smoke detector heartbeats (4 h), over a quarter charging snapshots (every minute, 170
# stations), lift camera heartbeats (10 min), the hourly one-touch alarms and water meters,
# and events a fraction of a percent.
STREET_MIX = LoadMix(smoke_heartbeat=0.34, elderly_heartbeat=0.03, elderly_activity=0.03, charging_status=0.28,
                     smoke_alarm=0.001, water_reading=0.03, lift_heartbeat=0.08, fire_station_duty=0.005,
                     ebike_in_lift=0.0005, hazard_report=0.0002)


def _makers(mix: LoadMix) -> list[tuple[float, str, Callable[[SimulatedDevice, int], Publication]]]:
    return [
        (mix.smoke_heartbeat, "smoke_detector", lambda d, t: d.heartbeat(t)),  # type: ignore[attr-defined]
        (mix.smoke_alarm, "smoke_detector", lambda d, t: d.alarm(t)),  # type: ignore[attr-defined]
        (mix.elderly_heartbeat, "elderly_alarm", lambda d, t: d.heartbeat(t)),  # type: ignore[attr-defined]
        (mix.elderly_activity, "elderly_alarm", lambda d, t: d.activity(t)),  # type: ignore[attr-defined]
        (mix.charging_status, "charging_station", lambda d, t: _station_status(d, t)),  # type: ignore[arg-type]
        (mix.water_reading, "water_meter", lambda d, t: d.periodic(t)[-1]),
        (mix.lift_heartbeat, "lift_camera", lambda d, t: d.periodic(t)[-1]),
        (mix.ebike_in_lift, "lift_camera", lambda d, t: d.ebike(t)),  # type: ignore[attr-defined]
        (mix.fire_station_duty, "fire_station", lambda d, t: d.duty_status(t)),  # type: ignore[attr-defined]
        (mix.hazard_report, "inspection_report", lambda d, t: d.report(t, "corridor_clutter")),  # type: ignore[attr-defined]
    ]


def _station_status(d: ChargingStationSim, t: int) -> Publication:
    d.step(60.0)
    return d.status(t)


def build_messages(records: Sequence[DeviceRecord], count: int, mix: LoadMix = LoadMix(), seed: int = 0,
                   start_seq: int = 1) -> list[Publication]:
    """``count`` publications from the registered ``records``, each device's sequence numbers increasing."""
    rng = random.Random(seed)
    by_kind: dict[str, list[SimulatedDevice]] = {}
    for rec in records:
        if rec.kind in SIMULATORS:
            by_kind.setdefault(rec.kind, []).append(SIMULATORS[rec.kind](rec.device_id, street=rec.street_id, seed=seed,
                                                                         seq=start_seq))
    makers = [m for m in _makers(mix) if m[0] > 0 and by_kind.get(m[1])]
    if not makers:
        raise ValueError("no registered devices of the kinds the load mix needs")
    weights = [m[0] for m in makers]
    out: list[Publication] = []
    for _ in range(count):
        _, kind, make = rng.choices(makers, weights)[0]
        out.append(make(rng.choice(by_kind[kind]), _PLACEHOLDER_MS))
    return out


def stamp(payload: bytes, now_ms: int) -> bytes:
    """Put the send time into a pre-built payload (cheap: same-width byte replace)."""
    return payload.replace(TS_PLACEHOLDER, b'"ts":%d' % now_ms, 1)


@dataclass
class PublishReport:
    sent: int
    acknowledged: int
    seconds: float
    by_kind: dict[str, int] = field(default_factory=dict)
    target_rate: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {n:,}" for k, n in sorted(self.by_kind.items(), key=lambda kv: -kv[1]))
        target = f" (target {self.target_rate:,.0f}/s)" if self.target_rate else " (as fast as possible)"
        return (f"sent {self.sent:,} messages in {self.seconds:.2f} s = {self.rate:,.0f} msg/s{target}; "
                f"acknowledged {self.acknowledged:,}; by kind: {kinds}")


def publish(messages: Sequence[Publication], host: str, port: int, *, qos: int = 1, rate: float = 0.0,
            inflight: int = 2000, client_id: str = "", username: str = "", password: str = "",
            progress: Callable[[int], None] | None = None) -> PublishReport:
    """Publish every message (as fast as possible, or at ``rate`` msg/s) and wait for the broker's acknowledgements."""
    pub = MqttPublisher(BrokerAddress(host, port), client_id=client_id or f"wanli-load-{time.time_ns()}",
                        username=username, password=password, inflight=inflight, qos=qos)
    by_kind: Counter[str] = Counter()
    started = time.monotonic()
    try:
        for i, (topic, payload) in enumerate(messages):
            if rate:
                ahead = started + i / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            pub.publish(topic, stamp(payload, wall_ms()))
            by_kind[topic.split("/", 4)[3]] += 1
            if progress is not None and i % 10_000 == 0:
                progress(i)
        pub.flush(60)
        seconds = time.monotonic() - started
    finally:
        pub.close()
    return PublishReport(len(messages), pub.acked, seconds, dict(by_kind), rate)

