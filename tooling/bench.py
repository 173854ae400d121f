"""``wanli bench ingest``: the full ingest path against real servers, beside the raw broker ceiling.

One run starts a local Mosquitto (the project's config) and a real InfluxDB 1.x. On this
two-core machine a Python publisher sending at full speed takes a whole core and tops out
below what the broker and ingest can move, so throughput is measured on a backlog: the
messages are published while the consumer is away (its persistent session queues them at
the broker, as after an outage or a restart), then the consumer connects and the clock runs
until it has everything. For each QoS:

1. the raw ceiling: ``mosquitto_sub`` with a persistent session drains the backlog;
2. the full path: the service (``wanli run``, its own process, the whole generated street
   registered) drains the same backlog (sequence numbers moved on, so nothing is a
   duplicate): receive, validate, deduplicate, evaluate the alert rules, spool, store in
   InfluxDB. The clock runs from ingest's subscription until every point is in InfluxDB
   (the spool empty) and every message counted;
3. latency, live: a paced publisher at half the full-path rate (or what it can manage);
   device clock → incident committed and → stored in InfluxDB, p50 / p99 over that run;
4. overload (``--overload-seconds``, QoS 1): publishers in their own processes offer three
   times the full-path rate (as near as two cores allow) while the service's memory (its
   process and its receiver's) is sampled every second; then the load stops and the clock
   runs until the backlog has drained. Memory should stay flat: the receiver stops reading
   at its bound and the broker holds the rest for ingest's session.

It prints one table with the service's peak memory (VmHWM) too. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import io
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devices.registry import DeviceRecord
from simulators.load import build_messages, publish
from tooling.local_servers import InfluxV1Server, MosquittoServer, find_binary, free_port
from tooling.street_files import street_on_disk


@dataclass
class PathResult:
    qos: int
    messages: int
    raw_rate: float
    full_rate: float
    publish_rate: float
    committed_p50: float
    committed_p99: float
    stored_p50: float
    stored_p99: float
    peak_rss_mb: float
    cpu: CpuSplit | None = None  # where the full path's CPU went

    @property
    def ratio(self) -> float:
        return self.full_rate / self.raw_rate if self.raw_rate else 0.0


def _mosquitto_sub(broker: MosquittoServer, client_id: str, qos: int, *extra: str) -> list[str]:
    return [find_binary("mosquitto_sub", "mosquitto-clients"), "-h", broker.host, "-p", str(broker.port),
            "-t", "safety/#", "-q", str(qos), "-c", "-i", client_id, *extra]


def _raw_ceiling(broker: MosquittoServer, messages: list[tuple[str, bytes]], qos: int) -> float:
    """Messages per second ``mosquitto_sub`` drains a backlog of these messages at."""
    client_id = f"bench-raw-{qos}-{time.time_ns()}"
    subprocess.run(_mosquitto_sub(broker, client_id, qos, "-E"), check=True, timeout=30)  # the session, subscribed
    publish(messages, broker.host, broker.port, qos=qos)
    started = time.monotonic()
    subprocess.run(_mosquitto_sub(broker, client_id, qos, "-C", str(len(messages))), check=True, timeout=600,
                   stdout=subprocess.DEVNULL)
    return len(messages) / (time.monotonic() - started)


def _status_mb(pid: int, field: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def _peak_rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmHWM")


def _children(pid: int) -> list[int]:
    """The process's children, whichever of its threads started them (``/proc/PID/task/TID/children`` lists only
    that thread's: the service starts its receivers from its consumer's thread, not its main one)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


class ServiceProcess:
    """``wanli run`` as a child process on the given broker and InfluxDB."""

    def __init__(self, workdir: Path, broker: MosquittoServer, influx: InfluxV1Server, street_file: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._workdir = workdir
        self._env = {**os.environ, "WANLI_MQTT_URL": broker.url, "WANLI_TELEMETRY_BACKEND": "influxdb1",
                     "WANLI_INFLUX_URL": influx.url, "WANLI_INFLUX_DATABASE": "bench",
                     "WANLI_DATA_DIR": str(workdir / "data"), "WANLI_HTTP_PORT": str(self.port),
                     "WANLI_SIMULATE_BUILDING": "false", "WANLI_HIERARCHY_FILE": str(street_file),
                     "WANLI_MQTT_CLIENT_ID": f"wanli-bench-{time.time_ns()}"}
        self.start()

    def start(self) -> None:
        """Start (again: same data, same MQTT session) and return once ingest is subscribed."""
        self.log = open(self._workdir / "service.log", "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", "wanli.cli", "run"], env=self._env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        workdir = self._workdir
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited; see {workdir / 'service.log'}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.02)  # the clock of a drain starts when this returns: poll finely
        raise RuntimeError("the service did not become ready in 60 s")

    def stats(self) -> dict[str, Any]:
        """The counters, without latency percentiles (cheap enough to poll)."""
        return httpx.get(f"{self.url}/api/stats", params={"latency": "false"}, timeout=10).json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def proc_ticks(path: Path) -> int:
    """User + system clock ticks of a process or a thread (``/proc/PID[/task/TID]/stat``) so far; 0 once gone."""
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(fields[11]) + int(fields[12])


@dataclass
class CpuSplit:
    """Where the CPU of a full-path drain went, per message: each process, and the service's busiest thread
    (its worker when the worker is the ceiling: then that thread's µs a message is near the wall's)."""
    messages: int  # received between the two samples: what the figures are divided by
    wall_us: float
    service_us: float
    busiest_thread_us: float
    receivers_us: float
    broker_us: float
    influxdb_us: float

    def line(self) -> str:
        return (f"CPU µs a message while draining: service {self.service_us:.1f} (its busiest thread "
                f"{self.busiest_thread_us:.1f}), receiver processes {self.receivers_us:.1f}, Mosquitto "
                f"{self.broker_us:.1f}, InfluxDB {self.influxdb_us:.1f}; wall {self.wall_us:.1f} µs a message "
                f"(over the last {self.messages:,} messages)")


class CpuSampler:
    """Clock ticks of the service (each thread), its receivers, the broker and InfluxDB, read together."""

    def __init__(self, service: ServiceProcess, broker_pid: int | None, influx_pid: int | None) -> None:
        self._service = service.process.pid
        self._others = (broker_pid, influx_pid)

    def read(self) -> dict[str, Any]:
        proc = Path("/proc")
        threads = {t.name: proc_ticks(t / "stat") for t in (proc / str(self._service) / "task").glob("*")}
        return {"at": time.monotonic(), "service": proc_ticks(proc / str(self._service) / "stat"), "threads": threads,
                "receivers": sum(proc_ticks(proc / str(c) / "stat") for c in _children(self._service)),
                "others": [proc_ticks(proc / str(p) / "stat") if p else 0 for p in self._others]}

    @staticmethod
    def split(a: dict[str, Any], b: dict[str, Any], messages: int) -> CpuSplit:
        us = 1e6 / os.sysconf("SC_CLK_TCK") / max(messages, 1)
        busiest = max((b["threads"][t] - a["threads"].get(t, 0) for t in b["threads"]), default=0)
        return CpuSplit(messages, (b["at"] - a["at"]) * 1e6 / max(messages, 1), (b["service"] - a["service"]) * us,
                        busiest * us, (b["receivers"] - a["receivers"]) * us,
                        (b["others"][0] - a["others"][0]) * us, (b["others"][1] - a["others"][1]) * us)


MIN_SPLIT_MESSAGES = 2_000  # the fewest messages a CPU split is divided by (ticks are 10 ms each)


def _full_path(service: ServiceProcess, broker: MosquittoServer, messages: list[tuple[str, bytes]], qos: int,
               expected_points: int, influx: InfluxV1Server | None = None) -> tuple[float, CpuSplit | None]:
    """Messages per second the service drains a backlog of these messages at, stored in InfluxDB; and where the
    CPU went meanwhile (from the first poll that saw messages received to the end: the service's start is not in
    it)."""
    service.stop()
    publish(messages, broker.host, broker.port, qos=qos)  # queued at the broker for ingest's session
    service.start()
    sampler = CpuSampler(service, broker.pid, influx.pid if influx is not None else None)
    first: tuple[dict[str, Any], int] | None = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        sample = sampler.read()
        s = service.stats()
        if first is None and s["received"]:
            first = (sample, s["received"])
        if s["received"] >= len(messages) and s["drained_points"] >= expected_points and s["spool_points"] == 0:
            # The backlog starts flowing when the session resumes, before the service says it is ready:
            # time from the first message the service received (its clock and ours are the same machine's).
            rate = len(messages) / (time.time() - s["first_received_ms"] / 1000)
            # a drain mostly over before the first poll saw it leaves too few messages to divide by: no split
            counted = len(messages) - first[1] if first else 0
            split = CpuSampler.split(first[0], sampler.read(), counted) if counted >= MIN_SPLIT_MESSAGES else None
            return rate, split
        time.sleep(0.1)
    raise RuntimeError(f"the full path did not finish within 600 s: {service.stats()}")


def _points_of(messages: list[tuple[str, bytes]]) -> int:
    """How many time-series points the messages become (a station snapshot: one plus one per port)."""
    return sum(1 + len(json.loads(p).get("ports", ())) for _t, p in messages)


def _paced_latency(service: ServiceProcess, broker: MosquittoServer, messages: list[tuple[str, bytes]], qos: int,
                   rate: float, expected_points: int) -> tuple[float, dict[str, Any]]:
    before = service.stats()
    sent = publish(messages, broker.host, broker.port, qos=qos, rate=rate)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        s = service.stats()
        if s["received"] - before["received"] >= len(messages) and s["drained_points"] - before["drained_points"] >= expected_points:
            latency = httpx.get(f"{service.url}/api/stats", params={"last": len(messages)}, timeout=10).json()["latency"]
            return sent.rate, latency
        time.sleep(0.05)
    raise RuntimeError("the paced run did not finish within 300 s")


@dataclass
class OverloadResult:
    seconds: float
    full_rate: float
    offered_rate: float
    published: int
    received: int
    rss_mb: list[float]  # the service and its receiver, once a second while loaded
    broker_rss_mb: float
    drain_s: float

    @property
    def growth_mb(self) -> float:
        """Memory at the end of the load over memory after its first ten seconds (warm-up)."""
        settled = self.rss_mb[min(10, len(self.rss_mb) - 1)]
        return self.rss_mb[-1] - settled


def _publish_share(messages: list[tuple[str, bytes]], host: str, port: int, rate: float) -> int:
    """One publisher process's share of the overload (a separate process: one Python publisher tops out near 10k/s)."""
    return publish(messages, host, port, qos=1, rate=rate).acknowledged


def _overload(service: ServiceProcess, broker: MosquittoServer, records: list[DeviceRecord], full_rate: float,
              seconds: float, publishers: int = 2) -> OverloadResult:
    target = 3 * full_rate
    shares = [records[k::publishers] for k in range(publishers)]  # a device's messages from one publisher, in order
    per = int(target * seconds / publishers)
    batches = [build_messages(share, per, seed=100 + k, start_seq=9 * 10**9) for k, share in enumerate(shares)]
    before = service.stats()
    pids = [service.process.pid, *_children(service.process.pid)]
    samples: list[float] = []
    ctx = multiprocessing.get_context("spawn")
    started = time.monotonic()
    with concurrent.futures.ProcessPoolExecutor(publishers, mp_context=ctx) as pool:
        futures = [pool.submit(_publish_share, b, broker.host, broker.port, target / publishers) for b in batches]
        while not all(f.done() for f in futures):
            samples.append(sum(_status_mb(p, "VmRSS") for p in pids))
            time.sleep(1.0)
        published = sum(f.result() for f in futures)
    load_s = time.monotonic() - started
    broker_rss = _status_mb(broker.pid, "VmRSS") if broker.pid else 0.0
    drain_started = time.monotonic()
    deadline = drain_started + 1200
    while time.monotonic() < deadline:
        s = service.stats()
        if s["received"] - before["received"] >= published and s["spool_points"] == 0:
            break
        time.sleep(0.2)
    s = service.stats()
    return OverloadResult(load_s, full_rate, published / load_s, published, s["received"] - before["received"],
                          samples, broker_rss, time.monotonic() - drain_started)


def _register_street(service: ServiceProcess, records: list[DeviceRecord]) -> None:
    csv_text = io.StringIO()
    writer = csv.writer(csv_text)
    writer.writerow(["device_id", "kind", "building_id", "floor", "unit", "label"])
    writer.writerows((r.device_id, r.kind, r.building_id, r.floor, r.unit, r.label) for r in records)
    with httpx.Client(base_url=service.url, timeout=300) as http:
        # development mode's own account (docs/access.md): the bench's service is a throwaway one
        signed = http.post("/api/auth/login", json={"username": "dev", "password": "wanli-dev"})
        signed.raise_for_status()
        http.headers["X-CSRF-Token"] = signed.json().get("csrf_token", "")  # a session's changes carry it
        report = http.post("/api/devices/import", content=csv_text.getvalue().encode())
    report.raise_for_status()
    if report.json()["rejected"]:
        raise RuntimeError(f"registering the street failed: {report.json()['rejected'][:5]}")


def run_ingest(count: int, qos_levels: list[int], workdir: Path,
               overload_s: float = 0.0) -> tuple[list[PathResult], OverloadResult | None]:
    street_file, records = street_on_disk(workdir)
    messages = {qos: build_messages(records, count, seed=qos, start_seq=1) for qos in qos_levels}
    broker = MosquittoServer(workdir / "mosquitto")
    influx = InfluxV1Server(workdir / "influxdb")
    broker.start()
    influx.start()
    service = None
    try:
        raw = {qos: _raw_ceiling(broker, messages[qos], qos) for qos in qos_levels}
        service = ServiceProcess(workdir, broker, influx, street_file)
        _register_street(service, records)
        results = []
        for i, qos in enumerate(qos_levels):
            full_msgs = build_messages(records, count, seed=qos, start_seq=(i + 1) * 10**9)
            full, cpu = _full_path(service, broker, full_msgs, qos, _points_of(full_msgs), influx)
            peak = sum(_peak_rss_mb(p) for p in (service.process.pid, *_children(service.process.pid)))
            paced = build_messages(records, max(count // 4, 1000), seed=qos + 7, start_seq=(i + 1) * 10**9 + 5 * 10**8)
            rate, lat = _paced_latency(service, broker, paced, qos, full / 2, _points_of(paced))
            results.append(PathResult(qos, count, raw[qos], full, rate, lat["publish_to_committed"]["p50"],
                                      lat["publish_to_committed"]["p99"], lat["publish_to_stored"]["p50"],
                                      lat["publish_to_stored"]["p99"], peak, cpu))
        overload = None
        if overload_s > 0:
            qos1 = next((r for r in results if r.qos == 1), results[-1])
            overload = _overload(service, broker, records, qos1.full_rate, overload_s)
        return results, overload
    finally:
        if service is not None:
            service.stop()
        influx.stop()
        broker.stop()


def print_table(results: list[PathResult]) -> None:
    print("throughput: draining a backlog queued at the broker; latency: live, at the paced rate shown")
    print(f"{'QoS':>3} {'messages':>9} {'full path msg/s':>16} {'raw mosquitto_sub msg/s':>24} {'ratio':>6} "
          f"{'paced msg/s':>12} {'→committed p50/p99 ms':>22} {'→stored p50/p99 ms':>19} {'peak RSS MB (+receiver)':>24}")
    for r in results:
        print(f"{r.qos:>3} {r.messages:>9} {r.full_rate:>16,.0f} {r.raw_rate:>24,.0f} {r.ratio:>6.2f} "
              f"{r.publish_rate:>12,.0f} {r.committed_p50:>10.0f} / {r.committed_p99:<9.0f} "
              f"{r.stored_p50:>8.0f} / {r.stored_p99:<8.0f} {r.peak_rss_mb:>24.0f}")
    for r in results:
        print(f"QoS {r.qos} full path, " + (r.cpu.line() if r.cpu is not None else
                                           f"CPU not split: fewer than {MIN_SPLIT_MESSAGES:,} messages came after the first poll"))


def print_overload(o: OverloadResult) -> None:
    print(f"overload (QoS 1): offered {o.offered_rate:,.0f} msg/s for {o.seconds:.0f} s "
          f"= {o.offered_rate / o.full_rate:.1f}x the full-path rate of {o.full_rate:,.0f}")
    print(f"  published {o.published:,}, received {o.received:,}, lost {o.published - o.received:,}; "
          f"backlog drained {o.drain_s:.0f} s after the load stopped")
    marks = [o.rss_mb[i] for i in sorted({0, min(10, len(o.rss_mb) - 1), len(o.rss_mb) // 2, len(o.rss_mb) - 1})]
    print(f"  service RSS (with its receiver) MB at 0 s / 10 s / middle / end: {' / '.join(f'{m:.0f}' for m in marks)}"
          f"; growth after warm-up {o.growth_mb:+.0f} MB; broker RSS at the end {o.broker_rss_mb:.0f} MB")


def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="wanli-bench-"))
    if getattr(args, "receiver", None):  # the service under test reads its settings from the environment
        os.environ["WANLI_INGEST_RECEIVER"] = args.receiver
    print(f"main lane's receiver: {os.environ.get('WANLI_INGEST_RECEIVER', 'paho')} (WANLI_INGEST_RECEIVER)")
    try:
        results, overload = run_ingest(args.messages, args.qos, workdir, args.overload_seconds)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_table(results)
    if overload is not None:
        print_overload(overload)
    return 0


def add_commands(sub: Any) -> tuple[Any, Any]:
    bench_parser = sub.add_parser("bench", help="benchmarks that print figures (bare: the headline table, as `all`)")
    bench = bench_parser.add_subparsers(dest="what")
    ingest = bench.add_parser("ingest", help="the full ingest path against real Mosquitto and InfluxDB 1.x")
    ingest.add_argument("--messages", type=int, default=200_000)
    ingest.add_argument("--qos", type=int, nargs="+", default=[0, 1], choices=[0, 1])
    ingest.add_argument("--keep", action="store_true", help="keep the work dir (logs, data) for a look afterwards")
    ingest.add_argument("--overload-seconds", type=float, default=60.0,
                        help="offer 3x the full-path rate at QoS 1 this long and watch memory (0: skip)")
    ingest.add_argument("--receiver", choices=["paho", "bulk"],
                        help="the service's main-lane MQTT receiver (WANLI_INGEST_RECEIVER; default: as set, else paho)")
    ingest.set_defaults(func=main)
    return bench_parser, bench  # each bench module adds its own commands: tooling.bench_commands
