"""The load generator for benchmarks: a realistic mix of devices' messages, published fast.

Messages are built up front (a benchmark measures ingest, not JSON encoding in the
publisher) from a population of registered devices: mostly heartbeats, some charging
station snapshots, activity and water readings, and a small share of events. Each message
carries the device's clock as ``ts`` at build time and is re-stamped cheaply at send time,
so publish-to-stored latency can be read from the stored points.

The publisher is paho-mqtt with a bounded window of QoS 1 messages in flight: more than
65,535 unacknowledged messages wedges a publisher (MQTT packet ids are 16 bits).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devices.registry import DeviceRecord
from simulators.devices.base import Publication, SimulatedDevice
from simulators.devices.charging_station import ChargingStationSim
from simulators.devices.elderly_alarm import ElderlyAlarmSim
from simulators.devices.smoke_detector import SmokeDetectorSim

TS_PLACEHOLDER = b'"ts":1000000000000'  # 13 digits, the same width as a real epoch-ms now


@dataclass(frozen=True, slots=True)
class LoadMix:
    """Shares of the message mix (they need not sum to 1; they are weights)."""

    smoke_heartbeat: float = 0.70
    elderly_heartbeat: float = 0.08
    elderly_activity: float = 0.08
    charging_status: float = 0.04
    smoke_alarm: float = 0.001  # a real street: a few alarms among thousands of heartbeats


def build_messages(records: Sequence[DeviceRecord], count: int, mix: LoadMix = LoadMix(), seed: int = 0,
                   start_seq: int = 1) -> list[Publication]:
    """``count`` publications from the registered ``records``, each device's sequence numbers increasing."""
    rng = random.Random(seed)
    by_kind: dict[str, list[SimulatedDevice]] = {}
    sims = {"smoke_detector": SmokeDetectorSim, "elderly_alarm": ElderlyAlarmSim, "charging_station": ChargingStationSim}
    for rec in records:
        if rec.kind in sims:
            by_kind.setdefault(rec.kind, []).append(sims[rec.kind](rec.device_id, street=rec.street_id, seed=seed,
                                                                   seq=start_seq))
    makers: list[tuple[float, str, Callable[[SimulatedDevice, int], Publication]]] = [
        (mix.smoke_heartbeat, "smoke_detector", lambda d, t: d.heartbeat(t)),  # type: ignore[attr-defined]
        (mix.smoke_alarm, "smoke_detector", lambda d, t: d.alarm(t)),  # type: ignore[attr-defined]
        (mix.elderly_heartbeat, "elderly_alarm", lambda d, t: d.heartbeat(t)),  # type: ignore[attr-defined]
        (mix.elderly_activity, "elderly_alarm", lambda d, t: d.activity(t)),  # type: ignore[attr-defined]
        (mix.charging_status, "charging_station", lambda d, t: d.status(t)),  # type: ignore[attr-defined]
    ]
    makers = [m for m in makers if m[0] > 0 and by_kind.get(m[1])]
    if not makers:
        raise ValueError("no registered devices of the kinds the load mix needs")
    weights = [m[0] for m in makers]
    stamp = int(TS_PLACEHOLDER.split(b":")[1])
    out: list[Publication] = []
    for _ in range(count):
        _, kind, make = rng.choices(makers, weights)[0]
        out.append(make(rng.choice(by_kind[kind]), stamp))
    return out


def stamp(payload: bytes, now_ms: int) -> bytes:
    """Put the send time into a pre-built payload (cheap: same-width byte replace)."""
    return payload.replace(TS_PLACEHOLDER, b'"ts":%d' % now_ms, 1)


@dataclass
class PublishReport:
    sent: int
    acknowledged: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


def publish(messages: Sequence[Publication], host: str, port: int, *, qos: int = 1, rate: float = 0.0,
            inflight: int = 2000, client_id: str = "", username: str = "", password: str = "",
            progress: Callable[[int], None] | None = None) -> PublishReport:
    """Publish every message (as fast as possible, or at ``rate`` msg/s) and wait for the broker's acknowledgements."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                         client_id=client_id or f"wanli-load-{time.time_ns()}", protocol=mqtt.MQTTv311)
    if username:
        client.username_pw_set(username, password)
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(inflight)
    window = threading.Semaphore(inflight)
    acked = 0
    lock = threading.Lock()

    def on_publish(_c, _u, _mid, _rc, _p) -> None:  # type: ignore[no-untyped-def]
        nonlocal acked
        with lock:
            acked += 1
        window.release()

    client.on_publish = on_publish
    client.connect(host, port, keepalive=60)
    client.loop_start()
    started = time.monotonic()
    try:
        for i, (topic, payload) in enumerate(messages):
            if rate:
                ahead = started + i / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            window.acquire()
            client.publish(topic, stamp(payload, time.time_ns() // 1_000_000), qos=qos)
            if progress is not None and i % 10_000 == 0:
                progress(i)
        deadline = time.monotonic() + 60
        while acked < len(messages) and time.monotonic() < deadline:
            time.sleep(0.01)
        seconds = time.monotonic() - started
    finally:
        client.disconnect()
        client.loop_stop()
    return PublishReport(len(messages), acked, seconds)
