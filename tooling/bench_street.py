"""``wanli bench street``: the whole generated street at N times its normal rate, memory sampled, every message counted.

The street (``simulators/population.py``: 50,615 devices, each at its kind's real cadence:
a smoke detector's heartbeat every four hours, a charging station's snapshot every minute,
…) is played by a ``SimClock`` running ``--speed`` times faster than the wall, so every
device sends ``speed`` times as often. Each message's simulated time is mapped onto the
wall clock (``wall start + simulated elapsed / speed``), because the service under test
(``wanli run``, its own process, real Mosquitto and InfluxDB 1.x) runs on the wall clock:
the latency figures are then real milliseconds, from when the message was due. The street first comes online (an ``online`` message from each device, the
burst after a power cut), then runs ``--minutes`` of wall time; a smoke alarm from a
detector of its own building every ``--alarm-every`` seconds measures publish → incident.

What it prints:
- per kind: published, received (readings), stored in InfluxDB (device-level points,
  ``port = ''``); duplicates and rejections, which should be none;
- memory of the service and its receiver processes, sampled every second: at the start of
  the steady phase, the middle and the end, and the least-squares slope after warm-up;
- device clock → committed and → stored in InfluxDB, p50 / p99, over the run; smoke alarm →
  incident opened, p50 / p99 / max;
- the 1-minute load average before and after (others share this machine's two cores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from devices.hierarchy import hierarchy_from_dict
from devices.kinds.smoke_detector.simulator import SmokeDetectorSim
from devices.street_generator import generate_street
from simulators.clock import SimClock
from simulators.population import Population, place_rows
from simulators.publisher import BrokerAddress, MqttPublisher
from tooling.chaos import ServiceProcess
from tooling.local_servers import InfluxV1Server, MosquittoServer
from foundation.service_clock import wall_ms

_TS = re.compile(rb'"ts":(\d+)')
_TYPE = re.compile(rb'"type":"(\w+)"')
_PORT = re.compile(rb'"port":(\d+)')  # a station port event's port (a snapshot: its first port, harmless)


def restamp(payload: bytes, clock: SimClock, sim_start_ms: int, wall_start_ms: int) -> bytes:
    """The payload with its simulated ``ts`` mapped onto the wall clock: the device's clock is the wall's, only its
    cadence is ``speed`` times faster (two snapshots a simulated minute apart are 6 s apart at 10x, never the same ms)."""
    def wall(m: re.Match[bytes]) -> bytes:
        return b'"ts":%d' % (wall_start_ms + round((int(m.group(1)) - sim_start_ms) / clock.speed))
    return _TS.sub(wall, payload, count=1)


def kind_of(topic: str) -> str:
    return topic.split("/")[3]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(c) for t in Path(f"/proc/{p}/task").iterdir()
                    for c in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            kids = []
        out += kids
        todo += kids
    return out


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and every process under it (the service and its MQTT receivers)."""
    return sum(_rss_mb(p) for p in (pid, *_descendants(pid)))


class MemorySampler(threading.Thread):
    """Samples ``tree_rss_mb(pid)`` every ``every_s`` seconds: (seconds since start, MB)."""

    def __init__(self, pid: int, every_s: float = 1.0) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, float]] = []
        self._halt = threading.Event()
        self._t0 = time.monotonic()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.monotonic() - self._t0, tree_rss_mb(self.pid)))
            self._halt.wait(self.every_s)

    def stop(self) -> list[tuple[float, float]]:
        self._halt.set()
        self.join(5)
        return self.samples


@dataclass
class MemoryFigures:
    start_mb: float  # after warm-up
    mid_mb: float
    end_mb: float
    peak_mb: float
    slope_mb_per_min: float  # least squares over the samples after warm-up
    samples: int
    late_slope_mb_per_min: float = 0.0  # the same over the second half only: is it levelling off?

    @classmethod
    def of(cls, samples: list[tuple[float, float]], warmup_s: float) -> MemoryFigures:
        steady = [(t, mb) for t, mb in samples if t >= warmup_s] or samples
        t = np.array([s[0] for s in steady])
        mb = np.array([s[1] for s in steady])
        slope = float(np.polyfit(t, mb, 1)[0]) * 60 if len(steady) >= 2 else 0.0
        half = len(steady) // 2
        late = float(np.polyfit(t[half:], mb[half:], 1)[0]) * 60 if len(steady) - half >= 2 else slope
        return cls(float(mb[0]), float(mb[half]), float(mb[-1]), max(s[1] for s in samples), slope, len(steady), late)

    @property
    def growth_mb(self) -> float:
        return self.end_mb - self.start_mb


@dataclass
class StreetResult:
    speed: float
    minutes: float
    devices: int
    announce: int  # ``online`` messages of the street coming online
    seconds: float  # of the steady phase
    published: Counter[str]
    acknowledged: int
    received: int
    readings: Counter[str]
    stored: Counter[str]
    collisions: Counter[str]  # messages sharing device, type and millisecond with an earlier one: one point in InfluxDB
    duplicates: int
    rejected: dict[str, int]
    memory: MemoryFigures
    committed_p50: float
    committed_p99: float
    stored_p50: float
    stored_p99: float
    alarm_latency_ms: list[float]
    alarms_sent: int
    drain_s: float  # from the last message published to everything counted and the spool empty
    load_before: float
    load_after: float
    load_max: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def total_published(self) -> int:
        return sum(self.published.values())

    @property
    def rate(self) -> float:
        return (self.total_published - self.announce) / self.seconds if self.seconds else 0.0

    @property
    def lost(self) -> int:
        """Messages published and acknowledged by the broker that ingest never counted (as a reading or otherwise)."""
        return max(0, self.total_published - self.received)

    def alarm_percentile(self, q: float) -> float:
        return float(np.percentile(self.alarm_latency_ms, q)) if self.alarm_latency_ms else float("nan")


def _iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def alarm_detectors(population: Population, count: int) -> list[SmokeDetectorSim]:
    """Detectors in distinct buildings (two in one building would be gathered into one incident), spread over the street."""
    seen: set[str] = set()
    building = {r.device_id: r.building_id for r in population.records}
    out: list[SmokeDetectorSim] = []
    for d in population.of_kind("smoke_detector"):
        b = building[d.device_id]
        if b not in seen:
            seen.add(b)
            out.append(d)  # type: ignore[arg-type]
    step = max(1, len(out) // max(count, 1))
    return out[::step][:count]


def run_street(workdir: Path, broker: MosquittoServer, influx: InfluxV1Server, *, speed: float = 10.0,
               minutes: float = 10.0, buildings: int | None = None, announce: bool = True,
               alarm_every_s: float = 10.0, warmup_s: float = 30.0, seed: int = 0) -> StreetResult:
    """Play the street against a ``wanli run`` of its own on these servers; count and measure everything."""
    workdir.mkdir(parents=True, exist_ok=True)
    raw = generate_street()
    hierarchy = hierarchy_from_dict(raw)
    street_file = workdir / "street.json"
    street_file.write_text(json.dumps(raw, ensure_ascii=False), "utf-8")
    if buildings:
        ids = [b for c in hierarchy.communities.values() for b in c.building_ids][:buildings]
        rows = place_rows(hierarchy, building_ids=ids)
    else:
        rows = place_rows(hierarchy, whole_street=True)
    population = Population.from_rows(rows, hierarchy.street_id, seed=seed, start_seq=wall_ms())
    n_alarms = int(minutes * 60 / alarm_every_s) if alarm_every_s > 0 else 0
    alarmers = alarm_detectors(population, n_alarms)
    building_of = {r.device_id: r.building_id for r in population.records}

    service = ServiceProcess(workdir / "service", broker, influx=influx, hierarchy_file=street_file,
                             influx_database=f"street_{wall_ms()}")
    load_before = os.getloadavg()[0]
    load_max = load_before
    service.start()
    sampler: MemorySampler | None = None
    publisher: MqttPublisher | None = None
    try:
        service.register(population.records)
        assert service.process is not None
        sampler = MemorySampler(service.process.pid)
        sampler.start()
        publisher = MqttPublisher(BrokerAddress(broker.host, broker.port), client_id=f"bench-street-{wall_ms()}",
                                  inflight=2000)
        published: Counter[str] = Counter()
        collisions: Counter[str] = Counter()
        series_times: set[tuple[bytes, ...]] = set()

        def send(topic: str, payload: bytes) -> None:
            publisher.publish(topic, payload)  # type: ignore[union-attr]
            kind = kind_of(topic)
            published[kind] += 1
            # InfluxDB keeps one point per series and time: two messages of a device, of one type (and port, for a
            # station's port events, tagged with it), in one millisecond (time compressed by ``speed``) are stored
            # as one. Count them, so "stored" can be checked exactly.
            kind_type, ts, port = _TYPE.search(payload), _TS.search(payload), _PORT.search(payload)
            key = (topic.encode(), kind_type.group(1) if kind_type else b"", ts.group(1) if ts else b"",
                   port.group(1) if port else b"")
            if key in series_times:
                collisions[kind] += 1
            series_times.add(key)

        clock = SimClock(speed=speed, shared=True)  # the cadence; the stamps are the wall's
        sim0, wall0 = clock.now_ms(), wall_ms()
        online = population.start(sim0, announce=announce)
        for topic, payload in online:
            send(topic, restamp(payload, clock, sim0, wall0))
        announced = len(online)
        started = time.monotonic()
        end = started + minutes * 60
        sent_alarms: dict[str, int] = {}
        next_alarm = started + alarm_every_s / 2 if alarmers else float("inf")
        while (now := time.monotonic()) < end:
            for topic, payload in population.tick(clock.now_ms()):
                send(topic, restamp(payload, clock, sim0, wall0))
            if now >= next_alarm and len(sent_alarms) < len(alarmers):
                sim = alarmers[len(sent_alarms)]
                ts = wall_ms()
                send(*sim.alarm(ts))
                sent_alarms[sim.device_id] = ts
                next_alarm += alarm_every_s
            load_max = max(load_max, os.getloadavg()[0])
            gap = clock.real_seconds(max(0, population.next_due_ms() - clock.now_ms()))
            time.sleep(min(0.05, max(0.002, gap), max(0.0, end - time.monotonic())))
        seconds = time.monotonic() - started
        publisher.flush(60)
        total = sum(published.values())
        drain_started = time.monotonic()
        deadline = drain_started + 300
        while True:
            s = service.stats()
            if s["received"] >= total and s["spool_points"] == 0 and s["backlog"] == 0:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        drain_s = time.monotonic() - drain_started
        samples = sampler.stop()
        latency = service.get("/api/stats", last=min(max(total - announced, 1), 200_000))["latency"]  # the window holds 200,000
        opened: dict[str, int] = {}
        for incident in service.incidents({building_of[d] for d in sent_alarms}):
            if incident["condition"] == "smoke_alarm" and incident["device_id"] in sent_alarms:
                opened[incident["device_id"]] = _iso_ms(incident["opened_at"])
        alarm_latency = [float(opened[d] - ts) for d, ts in sent_alarms.items() if d in opened]
        stored = Counter({k: _influx_messages(influx, service.influx_database, k) for k in published})
        notes = []
        if len(opened) < len(sent_alarms):
            notes.append(f"{len(sent_alarms) - len(opened)} alarms opened no incident of their own")
        return StreetResult(
            speed, minutes, len(population), announced, seconds, published, publisher.acked, s["received"],
            Counter(s["by_kind"]), stored, collisions, s["duplicates"], dict(s["rejected"]),
            MemoryFigures.of(samples, warmup_s), latency["publish_to_committed"].get("p50", float("nan")),
            latency["publish_to_committed"].get("p99", float("nan")), latency["publish_to_stored"].get("p50", float("nan")),
            latency["publish_to_stored"].get("p99", float("nan")), alarm_latency, len(sent_alarms), drain_s,
            load_before, os.getloadavg()[0], max(load_max, os.getloadavg()[0]), notes)
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        if publisher is not None:
            publisher.close()
        service.stop()
        service.close()


def _influx_messages(influx: InfluxV1Server, database: str, measurement: str) -> int:
    """Points of one kind in InfluxDB, one per message (a station snapshot's per-port points left out)."""
    # A station's snapshot is one point for the station and one per port; any other message is one point (a port's
    # event is tagged with its port, devices/kinds/charging_station/contract.py).
    where = "\"port\"::tag = '' OR \"type\"::tag != 'station_status'"
    result = influx.query(f"SELECT count(seq) FROM {measurement} WHERE {where}", database)["results"][0]
    if "error" in result:
        raise RuntimeError(f"InfluxDB refused the count of {measurement}: {result['error']}")
    return int(result["series"][0]["values"][0][1]) if result.get("series") else 0


def print_street(r: StreetResult) -> None:
    print(f"street: {r.devices:,} devices at {r.speed:g}x their normal cadence for {r.seconds / 60:.1f} min "
          f"({r.rate:,.0f} msg/s after {r.announce:,} 'online' messages); load avg {r.load_before:.2f} before, "
          f"{r.load_max:.2f} max, {r.load_after:.2f} after")
    print(f"{'kind':>17} {'published':>10} {'received':>10} {'stored (InfluxDB)':>18} {'same series+ms':>15}")
    for kind in sorted(r.published, key=lambda k: -r.published[k]):
        print(f"{kind:>17} {r.published[kind]:>10,} {r.readings[kind]:>10,} {r.stored[kind]:>18,} "
              f"{r.collisions[kind]:>15,}")
    print(f"{'all':>17} {r.total_published:>10,} {r.received:>10,} {sum(r.stored.values()):>18,} "
          f"{sum(r.collisions.values()):>15,}"
          f"   acknowledged by the broker {r.acknowledged:,}; duplicates {r.duplicates}; rejected {r.rejected or 0}; "
          f"lost {r.lost}; all handled {r.drain_s:.1f} s after the last publish")
    m = r.memory
    print(f"memory (service + receivers, RSS, {m.samples} samples after warm-up): start {m.start_mb:.0f} MB, "
          f"middle {m.mid_mb:.0f} MB, end {m.end_mb:.0f} MB, peak {m.peak_mb:.0f} MB; "
          f"slope {m.slope_mb_per_min:+.2f} MB/min, over the second half {m.late_slope_mb_per_min:+.2f} MB/min "
          f"({m.growth_mb:+.0f} MB over the run)")
    print(f"latency: device clock → committed p50 {r.committed_p50:.0f} / p99 {r.committed_p99:.0f} ms; "
          f"→ stored in InfluxDB p50 {r.stored_p50:.0f} / p99 {r.stored_p99:.0f} ms; smoke alarm → incident opened "
          f"p50 {r.alarm_percentile(50):.0f} / p99 {r.alarm_percentile(99):.0f} / max "
          f"{max(r.alarm_latency_ms, default=float('nan')):.0f} ms ({len(r.alarm_latency_ms)}/{r.alarms_sent} alarms)")
    for note in r.notes:
        print(f"note: {note}")


def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="wanli-bench-street-"))
    broker = MosquittoServer(workdir / "mosquitto")
    influx = InfluxV1Server(workdir / "influxdb")
    broker.start()
    influx.start()
    try:
        result = run_street(workdir / "run", broker, influx, speed=args.speed, minutes=args.minutes,
                            buildings=args.buildings, announce=not args.no_announce, alarm_every_s=args.alarm_every)
    finally:
        influx.stop()
        broker.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_street(result)
    return 0 if result.lost == 0 and not result.duplicates and not result.rejected else 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--speed", type=float, default=10.0, help="times the street's normal cadence (default 10)")
    p.add_argument("--minutes", type=float, default=10.0, help="wall-clock minutes of the steady phase (default 10)")
    p.add_argument("--buildings", type=int, help="only the first N buildings (default: the whole street)")
    p.add_argument("--alarm-every", type=float, default=10.0, help="a smoke alarm every N seconds (0: none)")
    p.add_argument("--no-announce", action="store_true", help="no 'online' burst from every device at the start")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, data) for a look afterwards")


def add_commands(bench_subparsers: Any) -> None:
    street = bench_subparsers.add_parser("street", help="the whole street at N times its normal rate: memory, loss, "
                                                        "latency")
    add_arguments(street)
    street.set_defaults(func=main)
