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
from simulators.devices.base import LoadStream, Publication, SimulatedDevice
from simulators.publisher import BrokerAddress, MqttPublisher
from foundation.service_clock import wall_ms

TS_PLACEHOLDER = b'"ts":1000000000000'  # 13 digits, the same width as a real epoch-ms now
_PLACEHOLDER_MS = 1_000_000_000_000


def load_streams() -> dict[str, LoadStream]:
    """Every stream of the mix, by name: the registered kinds' simulators' ``LOAD_STREAMS``, in registration order."""
    return {name: stream for sim in SIMULATORS.values() for name, stream in sim.LOAD_STREAMS.items()}


def _kind_of_stream() -> dict[str, str]:
    return {name: kind for kind, sim in SIMULATORS.items() for name in sim.LOAD_STREAMS}


class LoadMix:
    """Weights of the message mix, one per stream (they need not sum to 1).

    The streams are the kinds' own (each simulator's ``LOAD_STREAMS``); a stream not given keeps
    its default weight, the mix ``wanli bench`` has always measured (heartbeats, some snapshots and
    activity, a few alarms). ``STREET_MIX`` is the street at its real cadences.
    """

    __slots__ = ("weights",)

    def __init__(self, **weights: float) -> None:
        streams = load_streams()
        unknown = sorted(set(weights) - streams.keys())
        if unknown:
            raise ValueError(f"unknown load stream(s) {', '.join(unknown)}; the streams are: {', '.join(streams)}")
        self.weights: dict[str, float] = {name: float(weights.get(name, s.weight)) for name, s in streams.items()}

    def __getattr__(self, name: str) -> float:
        try:
            return self.weights[name]  # type: ignore[no-any-return]
        except (KeyError, AttributeError):
            raise AttributeError(name) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LoadMix) and other.weights == self.weights

    def __hash__(self) -> int:
        return hash(tuple(self.weights.items()))

    def __repr__(self) -> str:
        return "LoadMix(" + ", ".join(f"{k}={v}" for k, v in self.weights.items() if v) + ")"


# The generated street (50,615 devices) at the kinds' real cadences, as measured from the
# population simulation (docs/simulators.md): about 9 messages a second, a third of them
# smoke detector heartbeats (4 h), over a quarter charging snapshots (every minute, 170
# stations), lift camera heartbeats (10 min), the hourly one-touch alarms and water meters,
# and events a fraction of a percent. Each stream's ``street_weight``.
STREET_MIX = LoadMix(**{name: s.street_weight for name, s in load_streams().items()})


def _makers(mix: LoadMix) -> list[tuple[float, str, Callable[[SimulatedDevice, int], Publication]]]:
    kind_of = _kind_of_stream()
    return [(mix.weights[name], kind_of[name], s.make) for name, s in load_streams().items()]


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

