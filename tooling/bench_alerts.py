"""``wanli bench alerts``: how fast the alert engine evaluates, and how long an alarm waits under load.

Two figures, printed, never asserted:

1. **Rule evaluation rate**, pure: the whole generated street (50,615 devices) registered in
   an in-memory registry, messages of the load mix (``simulators/load.py``) decoded up front,
   then timed through ``AlertService`` batch evaluation (every rule of every kind, incidents
   opened and escalated in memory, nothing written), in ingest's batch size. Also what one
   tick of every rule over the whole street costs.
2. **Publish → incident committed** for smoke alarms, live: a real Mosquitto and InfluxDB 1.x
   (``tooling/local_servers.py``), the service in this process (``running_in_thread``) with the
   whole street registered, and a background publisher *process* sending telemetry (smoke
   and one-touch heartbeats, activity, charging-station snapshots; no alarms) at
   ``--background-rate`` msg/s. Meanwhile one alarm every ``--alarm-every-ms`` comes from a
   detector of its own; the latency of each is the time its incident was committed (the
   service's incident listener, told right after the commit) minus the device timestamp in
   the alarm, as ingest's ``publish_to_committed`` measures it for every message.

A Python paho publisher tops out near 10,000 msg/s on one core, which is why the background
load has its own process(es) (``--publishers``); the rate it actually reached is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing
import os
import queue
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from alerts.context import RegistryContext
from alerts.rules import default_rules
from alerts.service import AlertService, IncidentChange
from alerts.store import IncidentStore
from alerts.thresholds import Thresholds
from devices.catalog import KINDS
from devices.hierarchy import Hierarchy
from devices.kinds.smoke_detector.simulator import SmokeDetectorSim
from devices.reading import Reading
from devices.registry import DeviceRecord, DeviceRegistry
from ingest.decode import decode_message
from simulators.load import LoadMix, build_messages, publish, stamp
from foundation.db import create_schema, make_engine
from tooling.local_servers import InfluxV1Server, MosquittoServer
from tooling.street_files import street_on_disk
from foundation.mqtt import new_client
from wanli.runtime import running_in_thread
from foundation.service_clock import wall_ms
from wanli.settings import Settings, TelemetryBackend

TELEMETRY = LoadMix(smoke_alarm=0.0)  # the background: everything a street sends but alarms
BATCH = 500  # ingest's default batch size


def _street(workdir: Path) -> tuple[Path, list[DeviceRecord]]:
    return street_on_disk(workdir)


# -- 1. evaluation, pure ----------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    devices: int
    messages: int
    seconds: float
    tick_ms: float  # one tick of every rule over the street, after the first (which reads the population)
    first_tick_ms: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def run_evaluation(street_file: Path, records: list[DeviceRecord], count: int) -> EvaluationResult:
    from devices.hierarchy import load_hierarchy

    engine = make_engine("sqlite:///:memory:")
    create_schema(engine)
    hierarchy: Hierarchy = load_hierarchy(street_file)
    registry = DeviceRegistry(engine, hierarchy)
    registry.register_many(records, actor="bench", now_ms=wall_ms())
    rules = default_rules()
    ctx = RegistryContext(registry, Thresholds(rules, lambda d: (r.building_id if (r := registry.find(d)) else "")))
    alerts = AlertService(IncidentStore(engine), ctx.locate, ctx, hierarchy, rules)
    now = wall_ms()
    readings: list[Reading] = [decode_message(topic, stamp(payload, now), now, KINDS)
                               for topic, payload in build_messages(records, count, seed=1)]
    started = time.perf_counter()
    alerts.tick(now)  # reads the population of every dead-man timer
    first_tick_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    for i in range(0, len(readings), BATCH):
        with alerts.batch(now) as batch:  # never committed: evaluation only, nothing written
            batch.evaluate(readings[i:i + BATCH])
    seconds = time.perf_counter() - started
    ticks = []
    for k in range(1, 21):
        started = time.perf_counter()
        alerts.tick(now + k * 1000)
        ticks.append((time.perf_counter() - started) * 1000)
    engine.dispose()
    return EvaluationResult(len(records), len(readings), seconds, statistics.median(ticks), first_tick_ms)


# -- 2. publish → incident committed, under a background load --------------------------------------------------------


def _background(records: Sequence[DeviceRecord], count: int, host: str, port: int, rate: float, qos: int, seed: int,
                ready: Any, go: Any, report: Any) -> None:
    """One publisher process: build its messages, say so, wait for the start, publish them at ``rate``.

    At the lowest priority but one (nice 10): in the field the background comes from remote
    devices whose CPU is not the service's; here it shares two cores with the service, and
    should take what the service leaves rather than the other way round.
    """
    os.nice(10)
    messages = build_messages(records, count, TELEMETRY, seed=seed)
    ready.set()
    go.wait()
    sent = publish(messages, host, port, qos=qos, rate=rate, client_id=f"bench-background-{seed}-{time.time_ns()}")
    report.put((sent.sent, sent.acknowledged, sent.seconds))


def _report(report: Any, procs: Sequence[Any]) -> tuple[int, int, float]:
    """The next publisher's (sent, acknowledged, seconds); fails if a publisher died without one."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            return report.get(timeout=1)  # type: ignore[no-any-return]
        except queue.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"background publisher {dead[0].name} exited with {dead[0].exitcode}") from None
    raise RuntimeError("the background publishers did not finish within 300 s")


@dataclass
class LatencyResult:
    background_target: float
    background_rate: float
    alarms_sent: int
    alarms_committed: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    telemetry_p50_ms: float  # every message's device clock → committed (ingest's own measure), same run
    telemetry_p99_ms: float
    backlog_max: int
    load_before: float  # the machine's 1-minute load average when the run started and ended: others share it
    load_after: float


class AlarmClock:
    """When each smoke-alarm incident was committed (device → wall-clock ms), told by the service's listener."""

    def __init__(self) -> None:
        self.committed_ms: dict[str, int] = {}
        self._lock = threading.Lock()

    def on_changes(self, changes: Sequence[IncidentChange]) -> None:
        committed_ms = wall_ms()
        with self._lock:
            for change in changes:
                i = change.incident
                if change.created and i.condition == "smoke_alarm":
                    self.committed_ms.setdefault(i.device_id, committed_ms)

    def count(self, devices: Sequence[str]) -> int:
        with self._lock:
            return sum(d in self.committed_ms for d in devices)


def _alarms(host: str, port: int, device_ids: Sequence[str], every_ms: int, go: Any, sent: Any) -> None:
    """The detectors that alarm, in a process of their own (as in the field: not in the service's interpreter,
    whose lock the publishing thread would otherwise wait for). Says each alarm's device timestamp."""
    client = new_client(f"bench-alarms-{time.time_ns()}")
    client.connect(host, port, keepalive=60)
    client.loop_start()
    sims = [SmokeDetectorSim(d, seq=10**9) for d in device_ids]
    go.wait()
    started = time.monotonic()
    for i, sim in enumerate(sims):
        ahead = started + i * every_ms / 1000 - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        topic, payload = sim.alarm(wall_ms())
        client.publish(topic, payload, qos=1).wait_for_publish(10)
        sent.put((sim.device_id, json.loads(payload)["ts"]))
    client.disconnect()
    client.loop_stop()


def run_latency(workdir: Path, street_file: Path, records: list[DeviceRecord], rate: float, seconds: float,
                alarm_every_ms: int, publishers: int, qos: int) -> LatencyResult:
    detectors = [r for r in records if r.kind == "smoke_detector"]
    n_alarms = int(seconds * 1000 / alarm_every_ms)
    alarm_detectors = detectors[:: max(1, len(detectors) // max(n_alarms, 1))][:n_alarms]  # spread over the street
    quiet = {r.device_id for r in alarm_detectors}
    background_records = [r for r in records if r.device_id not in quiet]  # their sequence numbers are the alarms'
    warmup_s = 5.0
    per_publisher = rate / publishers
    count = int(per_publisher * (seconds + warmup_s + 5))

    broker = MosquittoServer(workdir / "mosquitto")
    influx = InfluxV1Server(workdir / "influxdb")
    broker.start()
    influx.start()
    load_before = os.getloadavg()[0]
    spawn = multiprocessing.get_context("spawn")
    procs: list[Any] = []
    try:
        settings = Settings(data_dir=workdir / "data", mqtt_url=broker.url, telemetry_backend=TelemetryBackend.INFLUXDB1,
                            influx_url=influx.url, influx_database="bench_alerts", hierarchy_file=street_file,
                            http_port=0, simulate_building=False, mqtt_client_id=f"wanli-bench-alerts-{time.time_ns()}")
        with running_in_thread(settings, owns_process=True) as service:  # tuned as `wanli run` is
            service.services.registry.register_many(records, actor="bench", now_ms=wall_ms())
            gc.freeze()  # the street registered after the start: frozen now, as the heap keeper does within a minute
            clock = AlarmClock()
            service.services.alerts.subscribe(clock.on_changes)
            ready, go, report = spawn.Event(), spawn.Event(), spawn.Queue()
            for k in range(publishers):
                p = spawn.Process(target=_background, name=f"bench-background-{k}", daemon=True,
                                  args=(background_records, count, broker.host, broker.port, per_publisher, qos, k,
                                        ready, go, report))
                p.start()
                procs.append(p)
                ready.wait(600)
                ready.clear()
            alarm_ids = [r.device_id for r in alarm_detectors]
            alarms_go, sent_q = spawn.Event(), spawn.Queue()
            alarm_proc = spawn.Process(target=_alarms, name="bench-alarms", daemon=True,
                                       args=(broker.host, broker.port, alarm_ids, alarm_every_ms, alarms_go, sent_q))
            alarm_proc.start()
            procs.append(alarm_proc)
            go.set()
            time.sleep(warmup_s)  # the background reaches its rate (and ingest its backlog, if it has one)
            alarms_go.set()
            backlog_max = 0
            sent: dict[str, int] = {}
            deadline = time.monotonic() + seconds + 120
            while (len(sent) < len(alarm_ids) or clock.count(alarm_ids) < len(alarm_ids)) and time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):
                    device_id, ts = sent_q.get(timeout=0.1)
                    sent[device_id] = ts
                backlog_max = max(backlog_max, service.consumer.backlog if service.consumer else 0)
            measured = service.snapshot(last=int(rate * seconds))["latency"]["publish_to_committed"]  # type: ignore[index]
            reports = [_report(report, procs[:publishers]) for _ in range(publishers)]
        lat = np.array(sorted(clock.committed_ms[d] - ts for d, ts in sent.items() if d in clock.committed_ms),
                       dtype=np.float64)
        sent_total = sum(r[0] for r in reports)
        background_rate = sent_total / max(r[2] for r in reports) if reports else 0.0
        return LatencyResult(
            rate, background_rate, len(alarm_ids), len(lat),
            float(np.percentile(lat, 50)) if lat.size else float("nan"),
            float(np.percentile(lat, 99)) if lat.size else float("nan"),
            float(lat.max()) if lat.size else float("nan"),
            float(measured.get("p50", float("nan"))), float(measured.get("p99", float("nan"))), backlog_max,
            load_before, os.getloadavg()[0])
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join(10)
        influx.stop()
        broker.stop()


def print_figures(evaluation: EvaluationResult | None, latencies: Sequence[LatencyResult]) -> None:
    if evaluation is not None:
        print(f"rule evaluation (pure, every rule, batches of {BATCH}): {evaluation.rate:,.0f} msg/s "
              f"({evaluation.messages:,} messages over a street of {evaluation.devices:,} devices in "
              f"{evaluation.seconds:.2f} s); a tick of every rule over the street: {evaluation.tick_ms:.2f} ms "
              f"(the first, reading the population: {evaluation.first_tick_ms:.0f} ms)")
    if latencies:
        print("smoke alarm published → incident committed (device timestamp → commit), real Mosquitto + InfluxDB 1.x:")
        print(f"{'background target':>18} {'reached msg/s':>14} {'alarms':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'all msgs p50/p99 ms':>20} {'max backlog':>12} {'load avg':>11}")
        for r in latencies:
            print(f"{r.background_target:>18,.0f} {r.background_rate:>14,.0f} {r.alarms_committed:>4}/{r.alarms_sent:<3} "
                  f"{r.p50_ms:>8.0f} {r.p99_ms:>8.0f} {r.max_ms:>8.0f} "
                  f"{r.telemetry_p50_ms:>9.0f} / {r.telemetry_p99_ms:<8.0f} {r.backlog_max:>12,} "
                  f"{r.load_before:>5.1f}→{r.load_after:<5.1f}")


def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="wanli-bench-alerts-"))
    try:
        street_file, records = _street(workdir)
        evaluation = None if args.skip_evaluation else run_evaluation(street_file, records, args.messages)
        print_figures(evaluation, [])
        latencies = []
        for i, rate in enumerate(args.background_rate):
            run_dir = workdir / f"run-{i}"
            run_dir.mkdir()
            latencies.append(run_latency(run_dir, street_file, records, rate, args.seconds, args.alarm_every_ms,
                                         args.publishers, args.background_qos))
        print_figures(None, latencies)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def add_commands(bench_subparsers: Any) -> None:
    alerts = bench_subparsers.add_parser("alerts", help="rule evaluation rate, and alarm → incident latency under load")
    alerts.add_argument("--messages", type=int, default=200_000, help="messages for the pure evaluation rate")
    alerts.add_argument("--background-rate", type=float, nargs="*", default=[10_000.0],
                        help="background telemetry msg/s (several: one run each; none: no live run)")
    alerts.add_argument("--publishers", type=int, default=1, help="background publisher processes")
    alerts.add_argument("--background-qos", type=int, default=1, choices=[0, 1])
    alerts.add_argument("--seconds", type=float, default=30.0, help="how long alarms are sent, per run")
    alerts.add_argument("--alarm-every-ms", type=int, default=200)
    alerts.add_argument("--skip-evaluation", action="store_true")
    alerts.add_argument("--keep", action="store_true", help="keep the work dir (logs, data) for a look afterwards")
    alerts.set_defaults(func=main)
