"""``wanli chaos``: inject the faults "100-1=0" must survive, against real servers, and report.

Each fault is a function over running servers (Mosquitto, InfluxDB 1.x) and a size. It runs
the service as its own OS process (``python -m wanli.cli run``, in its own session so the
whole process tree can be killed at once), injects the fault while devices publish, and
returns a :class:`FaultReport`: what was published, what the service stored or opened, how
much was lost or counted twice, and how long recovery took.

    kill_ingest_mid_storm           SIGKILL the service's process group mid-storm of QoS 1 alarms; restart
    influx_outage_under_load        stop InfluxDB under steady telemetry (and a few alarms); start it again
    broker_restart_under_load       restart Mosquitto while alarms are being published
    restart_with_pending_deadlines  SIGKILL the service with escalation deadlines pending; start it later

``tests/reliability/test_faults.py`` runs a short version of each against the test suite's
servers and asserts nothing lost and nothing doubled; ``wanli chaos`` starts its own servers,
runs the heavy versions (minutes of outage, big storms) and prints one table.
Figures and how to run them: docs/reliability.md.

The escalation fault needs the service to have been down for minutes. The heavy version
waits them out with ``wanli run``; the short one starts the same ``WanliService`` through
``python -m tooling.chaos --clock-offset-ms N`` (settings from ``WANLI_*``), whose clock runs
N ms ahead of the wall: the restart happens "minutes later" without the wait.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devices.hierarchy import Hierarchy, load_hierarchy
from devices.kinds.smoke_detector.simulator import SmokeDetectorSim
from devices.registry import DeviceRecord
from simulators.devices.base import Publication
from devices.kinds.smoke_detector.simulator import SmokeDetectorSim
from tooling.local_servers import InfluxV1Server, MosquittoServer, free_port
from foundation.mqtt import Client, new_client
from foundation.service_clock import wall_ms

READY_TIMEOUT_S = 60.0
SMOKE_ALARM = "smoke_alarm"


def now_ms() -> int:
    return wall_ms()


def wait_for(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.1, what: str = "") -> Any:
    """Poll until ``predicate`` returns something truthy; TimeoutError with what it last returned."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what or 'condition'} not met within {timeout_s:.0f} s (last: {last!r})")
        time.sleep(interval_s)


# --- the report ---------------------------------------------------------------------


@dataclass
class FaultReport:
    """What one fault injection showed. ``stored`` counts incidents or points, as ``unit`` says."""

    fault: str
    injected: str
    published: int
    stored: int
    lost: int
    duplicates: int
    recovery_s: float
    unit: str = "incidents"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates == 0


def format_table(reports: Sequence[FaultReport]) -> str:
    header = ("fault", "injected", "published", "stored / incidents", "lost", "duplicates", "recovery")
    rows = [(r.fault, r.injected, f"{r.published:,}", f"{r.stored:,} {r.unit}", f"{r.lost:,}", f"{r.duplicates:,}",
             f"{r.recovery_s:.1f} s") for r in reports]
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)), line]
    out += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    for r in reports:
        if r.details:
            out.append(f"  {r.fault}: " + ", ".join(f"{k}={v}" for k, v in r.details.items()))
    return "\n".join(out)


# --- the service as its own process ---------------------------------------------------------


class ServiceProcess:
    """``wanli run`` (or the clock-shifted launcher) as a child process in its own session.

    Starting it again resumes the same data dir and the same persistent MQTT session (a
    fixed client id), as a supervisor restarting it would. ``kill`` sends SIGKILL to the
    whole process group, so it stays a crash whatever children the service runs.
    """

    def __init__(self, workdir: Path, broker: MosquittoServer, *, influx: InfluxV1Server | None = None,
                 influx_database: str = "", hierarchy_file: Path | None = None, alert_tick_s: float = 0.2,
                 extra_env: dict[str, str] | None = None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = workdir / "data"
        self.log_path = workdir / "service.log"
        self.broker = broker
        self.influx = influx
        self.influx_database = influx_database or f"chaos_{uuid.uuid4().hex[:8]}"
        self.client_id = f"wanli-chaos-{uuid.uuid4().hex[:8]}"
        self.hierarchy: Hierarchy = load_hierarchy(hierarchy_file)
        self._env = {
            **os.environ,
            "WANLI_MQTT_URL": broker.url, "WANLI_DATA_DIR": str(self.data_dir), "WANLI_HTTP_PORT": str(self.port),
            "WANLI_SIMULATE_BUILDING": "false", "WANLI_MQTT_CLIENT_ID": self.client_id,
            "WANLI_ALERT_TICK_S": str(alert_tick_s),
            **({"WANLI_HIERARCHY_FILE": str(hierarchy_file)} if hierarchy_file else {}),
            **({"WANLI_TELEMETRY_BACKEND": "influxdb1", "WANLI_INFLUX_URL": influx.url,
                "WANLI_INFLUX_DATABASE": self.influx_database} if influx else {}),
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._http = httpx.Client(base_url=self.url, trust_env=False, timeout=30)

    def argv(self, clock_offset_ms: int | None) -> list[str]:
        if clock_offset_ms is not None:
            return [sys.executable, "-m", "tooling.chaos", "--clock-offset-ms", str(clock_offset_ms)]
        argv = [sys.executable, "-m", "wanli.cli", "run", "--no-simulate", "--mqtt-url", self.broker.url,
                "--data-dir", str(self.data_dir), "--port", str(self.port)]
        if self.influx is not None:
            argv += ["--telemetry", "influxdb1", "--influx-url", self.influx.url]
        return argv

    def start(self, clock_offset_ms: int | None = None) -> float:
        """Start and return once ingest is subscribed (``/readyz``); the seconds that took."""
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"=== start {self.starts} (clock offset {clock_offset_ms}) at {time.strftime('%H:%M:%S')}\n".encode())
            log.flush()
            self.process = subprocess.Popen(self.argv(clock_offset_ms), env=self._env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                            start_new_session=True)
        self.starts += 1
        deadline = started + READY_TIMEOUT_S
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the service was not ready in {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")
            time.sleep(0.05)
        return time.monotonic() - started

    def ready(self) -> bool:
        try:
            return self._http.get("/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to every process in the service's group (a crash, a power cut); wait until none is left."""
        self._signal_group(signal.SIGKILL, timeout_s=10)

    def stop(self) -> None:
        """SIGTERM (a graceful stop), SIGKILL after 30 s."""
        if not self._signal_group(signal.SIGTERM, timeout_s=30):
            self.kill()

    def _signal_group(self, sig: signal.Signals, timeout_s: float) -> bool:
        process = self.process
        if process is None:
            return True
        pgid = process.pid  # start_new_session: the service leads its own group
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        deadline = time.monotonic() + timeout_s
        while _group_alive(pgid):  # children the service started die with it, or the test is void
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        self.process = None
        return True

    def close(self) -> None:
        if self.running:
            self.kill()
        self._http.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # -- the API, as an operator or a test sees it

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call to the API, signed in as the development account when the API asks for it (401)."""
        resp = self._http.request(method, path, **kwargs)
        if resp.status_code == 401:
            self.sign_in()
            resp = self._http.request(method, path, **kwargs)
        resp.raise_for_status()
        return resp

    def sign_in(self) -> None:
        try:
            from dashboards.auth import DEVELOPMENT_PASSWORD, DEVELOPMENT_USERNAME
        except ImportError:  # a version of the service without accounts never answers 401
            raise RuntimeError("the API refused a request (401) but knows no accounts") from None
        signed = self._http.post("/api/auth/login",
                                 json={"username": DEVELOPMENT_USERNAME, "password": DEVELOPMENT_PASSWORD})
        signed.raise_for_status()
        self._http.headers["X-CSRF-Token"] = signed.json().get("csrf_token", "")  # a session's changes carry it

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def stats(self) -> dict[str, Any]:
        return self.get("/api/stats", latency="false")  # type: ignore[no-any-return]

    def register(self, records: Sequence[DeviceRecord]) -> None:
        """Register devices through the API's CSV import, as maintainers do."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["device_id", "kind", "building_id", "floor", "unit", "label"])
        writer.writerows([r.device_id, r.kind, r.building_id, r.floor, r.unit, r.label] for r in records)
        report = self.request("POST", "/api/devices/import", content=out.getvalue().encode(), params={"actor": "chaos"},
                              timeout=300).json()
        if report.get("rejected"):
            raise RuntimeError(f"the registry refused devices: {report['rejected'][:3]}")

    def incidents(self, building_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Every incident of these buildings (one query each: the API lists at most 1,000 at a time)."""
        found: dict[str, dict[str, Any]] = {}
        for building_id in sorted(set(building_ids)):
            for incident in self.get("/api/incidents", building_id=building_id, limit=1000):
                found[incident["id"]] = incident
        return list(found.values())


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still counts for killpg(0) until reaped; a group of zombies only is dead.
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


# --- devices publishing ---------------------------------------------------------------------


class Devices:
    """Devices publishing at QoS 1 over several MQTT connections, one connection per device.

    paho re-sends every unacknowledged QoS 1 message when it reconnects (with the DUP flag),
    as a device does until it gets its PUBACK: a broker restart costs a delay, never a message.
    ``acknowledged`` counts PUBACKs; a message counts as published once acknowledged.
    """

    def __init__(self, broker: MosquittoServer, connections: int = 4, inflight: int = 1000) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.acknowledged = 0
        self._clients: list[Client] = []
        for i in range(connections):
            client = new_client(f"chaos-devices-{i}-{uuid.uuid4().hex[:6]}")
            client.max_inflight_messages_set(inflight)
            client.reconnect_delay_set(min_delay=1, max_delay=2)
            client.on_publish = self._on_publish
            client.connect(broker.host, broker.port, keepalive=10)
            client.loop_start()
            self._clients.append(client)

    def _on_publish(self, *_args: Any) -> None:
        with self._lock:
            self.acknowledged += 1

    def publish(self, device_index: int, publication: Publication) -> None:
        topic, payload = publication
        # Published while disconnected, the message waits in paho's queue for the reconnect.
        self._clients[device_index % len(self._clients)].publish(topic, payload, qos=1)
        with self._lock:
            self.sent += 1

    def wait_acknowledged(self, timeout_s: float = 120) -> int:
        wait_for(lambda: self.acknowledged >= self.sent, timeout_s, what=f"PUBACKs for {self.sent} messages")
        return self.acknowledged

    def close(self) -> None:
        for client in self._clients:
            client.disconnect()
            client.loop_stop()


def storm_devices(hierarchy: Hierarchy, count: int, prefix: str = "SD-CH") -> list[DeviceRecord]:
    """``count`` smoke detectors spread over every building of the street, one per floor in turn."""
    buildings = list(hierarchy.buildings.values())
    tag = uuid.uuid4().hex[:4].upper()
    out = []
    for i in range(count):
        b = buildings[i % len(buildings)]
        floor = (i // len(buildings)) % b.floors + 1
        out.append(DeviceRecord(f"{prefix}-{tag}-{i:06d}", "smoke_detector", hierarchy.street_id, b.id, floor, "",
                                f"chaos {i}"))
    return out


def publish_paced(devices: Devices, sims: Sequence[SmokeDetectorSim], make: Callable[[SmokeDetectorSim, int], Publication],
                  count: int, rate: float, stop: threading.Event | None = None,
                  on_sent: Callable[[int], None] | None = None) -> int:
    """Publish ``count`` messages at ``rate`` msg/s, device after device in turn; how many were sent."""
    started = time.monotonic()
    last_ts: dict[int, int] = {}
    for i in range(count):
        if stop is not None and stop.is_set():
            return i
        ahead = started + i / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        d = i % len(sims)
        ts = max(now_ms(), last_ts.get(d, 0) + 1)  # one point per device and millisecond: InfluxDB's identity
        last_ts[d] = ts
        devices.publish(d, make(sims[d], ts))
        if on_sent is not None:
            on_sent(i + 1)
    return count


@contextmanager
def in_background(target: Callable[[], Any]) -> Iterator[threading.Thread]:
    """Run ``target`` in a thread for the duration of the block; re-raise what it raised."""
    error: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            error.append(exc)

    thread = threading.Thread(target=run, name="chaos-publisher", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        thread.join(600)
    if error:
        raise error[0]


def account_alarms(service: ServiceProcess, records: Sequence[DeviceRecord], alarms_per_device: int
                   ) -> tuple[int, int, int]:
    """(devices with their incident, alarms lost, alarms counted twice) over the storm's devices."""
    ours = {r.device_id for r in records}
    incidents = [i for i in service.incidents(r.building_id for r in records)
                 if i["condition"] == SMOKE_ALARM and i["device_id"] in ours]
    per_device = Counter(i["device_id"] for i in incidents)
    events = Counter()
    for i in incidents:
        events[i["device_id"]] += i["event_count"]
    lost = sum(max(0, alarms_per_device - events[d]) for d in ours)
    doubled = sum(max(0, events[d] - alarms_per_device) for d in ours) + sum(n - 1 for n in per_device.values())
    return len(per_device), lost, doubled


# --- the faults -------------------------------------------------------------------------------


def kill_ingest_mid_storm(workdir: Path, broker: MosquittoServer, *, devices: int = 300, alarms_per_device: int = 1,
                          rate: float = 400.0, kills: int = 1, down_s: float = 1.0,
                          hierarchy_file: Path | None = None) -> FaultReport:
    """SIGKILL the service's whole process tree mid-storm (``kills`` times), restart it each time.

    Every alarm published (acknowledged by the broker) must end up counted in exactly one
    incident of its device: ``devices`` distinct detectors, each alarming ``alarms_per_device``
    times, must give ``devices`` incidents whose event counts add up to what was published.
    """
    service = ServiceProcess(workdir, broker, hierarchy_file=hierarchy_file)
    publisher = None
    try:
        service.start()
        records = storm_devices(service.hierarchy, devices)
        service.register(records)
        sims = [SmokeDetectorSim(r.device_id, seq=now_ms()) for r in records]
        publisher = Devices(broker)
        total = devices * alarms_per_device
        restarts: list[float] = []
        received_before_kill: list[int] = []
        sent_box = [0]

        def on_sent(n: int) -> None:
            sent_box[0] = n

        with in_background(lambda: publish_paced(publisher, sims, lambda d, t: d.alarm(t), total, rate,
                                                 on_sent=on_sent)):
            for k in range(kills):
                # Kill once the service has taken in part of the storm and more is still coming.
                target = total * (k + 1) // (kills + 1)
                wait_for(lambda t=target: sent_box[0] >= t and service.stats()["received"] > 0, 600,
                         what="the storm to get going")
                received_before_kill.append(service.stats()["received"])
                service.kill()
                time.sleep(down_s)
                recovered_at = time.monotonic()  # recovery: from the last restart to every alarm counted
                restarts.append(service.start())
        publisher.wait_acknowledged()
        published = publisher.acknowledged
        try:
            wait_for(lambda: account_alarms(service, records, alarms_per_device)[1] == 0, 60 + total / 200,
                     interval_s=0.5, what="every alarm counted")
        except TimeoutError:
            pass  # the report says what is missing
        recovery = time.monotonic() - recovered_at
        time.sleep(1)  # anything redelivered late would show as a duplicate now
        opened, lost, doubled = account_alarms(service, records, alarms_per_device)
        stats = service.stats()
        return FaultReport(
            "kill -9 ingest mid-storm",
            f"SIGKILL of the process group x{kills}, {down_s:.0f} s down each, {devices:,} detectors alarming at "
            f"{rate:.0f}/s",
            published, opened, lost, doubled, recovery,
            details={"received_before_kill": "/".join(map(str, received_before_kill)),
                     "restart_to_ready_s": "/".join(f"{s:.1f}" for s in restarts),
                     "duplicates_dropped_after_restart": stats["duplicates"]})
    finally:
        if publisher is not None:
            publisher.close()
        service.close()


def influx_count(influx: InfluxV1Server, database: str, measurement: str = "smoke_detector") -> int:
    result = influx.query(f"SELECT count(seq) FROM {measurement}", database)["results"][0]
    return result["series"][0]["values"][0][1] if result.get("series") else 0


def influx_outage_under_load(workdir: Path, broker: MosquittoServer, influx: InfluxV1Server, *, devices: int = 200,
                             rate: float = 200.0, before_s: float = 2.0, outage_s: float = 5.0, after_s: float = 2.0,
                             alarms_during_outage: int = 5) -> FaultReport:
    """Steady heartbeats; InfluxDB stopped for ``outage_s`` in the middle; every point must reach it afterwards.

    A few alarms during the outage must open their incidents while InfluxDB is down (the
    spool holds the time series; the alert engine does not wait for it).
    """
    service = ServiceProcess(workdir, broker, influx=influx)
    publisher = None
    try:
        service.start()
        records = storm_devices(service.hierarchy, devices + alarms_during_outage)
        service.register(records)
        sims = [SmokeDetectorSim(r.device_id, seq=now_ms()) for r in records]
        beating, alarming = sims[:devices], sims[devices:]
        publisher = Devices(broker)
        stop = threading.Event()
        heartbeats = [0]

        def load() -> None:
            heartbeats[0] = publish_paced(publisher, beating, lambda d, t: d.heartbeat(t), 10**9, rate, stop)

        peak_spool = 0
        alarm_latency_s: list[float] = []
        with in_background(load):
            time.sleep(before_s)
            influx.stop()
            outage_started = time.monotonic()
            try:
                for i, sim in enumerate(alarming):
                    publisher.publish(devices + i, sim.alarm(now_ms()))
                    sent_at = time.monotonic()
                    wait_for(lambda s=sim: any(inc["device_id"] == s.device_id for inc in
                                               service.get("/api/incidents", active="true", limit=1000)), 30,
                             what=f"an incident for {sim.device_id} while InfluxDB is down")
                    alarm_latency_s.append(time.monotonic() - sent_at)
                while time.monotonic() - outage_started < outage_s:
                    peak_spool = max(peak_spool, service.stats()["spool_points"])
                    time.sleep(0.5)
                peak_spool = max(peak_spool, service.stats()["spool_points"])
            finally:
                influx.start()
            restarted = time.monotonic()
            drained = None  # seconds from InfluxDB back to the spool's backlog gone, the load still running
            while time.monotonic() - restarted < after_s or drained is None:
                if drained is None and service.stats()["spool_points"] < rate:  # under a second's worth: caught up
                    drained = time.monotonic() - restarted
                if time.monotonic() - restarted > after_s + 120 + outage_s:
                    break
                time.sleep(0.2)
            stop.set()
        publisher.wait_acknowledged()
        published_heartbeats = publisher.acknowledged - alarms_during_outage
        wait_for(lambda: (s := service.stats())["spool_points"] == 0 and s["received"] >= publisher.acknowledged,
                 120 + outage_s, interval_s=0.2, what="the spool to drain")
        drained = drained if drained is not None else time.monotonic() - restarted
        stored = influx_count(influx, service.influx_database)
        stats = service.stats()
        expected = published_heartbeats + alarms_during_outage
        return FaultReport(
            "InfluxDB down under load",
            f"InfluxDB stopped {outage_s:.0f} s under {rate:.0f} heartbeats/s, {alarms_during_outage} alarms meanwhile",
            expected, stored, max(0, expected - stored), stats["duplicates"], drained, unit="points",
            details={"peak_spool_points": peak_spool, "store_failures": stats["store_failures"],
                     "alarm_to_incident_during_outage_max_s": f"{max(alarm_latency_s, default=0):.2f}"})
    finally:
        if publisher is not None:
            publisher.close()
        service.close()


def broker_restart_under_load(workdir: Path, broker: MosquittoServer, *, devices: int = 300, rate: float = 100.0,
                              restarts: int = 1, down_s: float = 1.0) -> FaultReport:
    """Alarms from ``devices`` detectors while Mosquitto is restarted (graceful stop, ``down_s``, start) ``restarts`` times.

    The devices and ingest reconnect by themselves; every acknowledged alarm must open its
    incident exactly once. Relies on Mosquitto's persistence keeping ingest's session and
    queue across the restart (config/mosquitto/test.conf).
    """
    service = ServiceProcess(workdir, broker)
    publisher = None
    try:
        service.start()
        records = storm_devices(service.hierarchy, devices)
        service.register(records)
        sims = [SmokeDetectorSim(r.device_id, seq=now_ms()) for r in records]
        publisher = Devices(broker)
        sent_box = [0]
        back_to_ready: list[float] = []

        def on_sent(n: int) -> None:
            sent_box[0] = n

        with in_background(lambda: publish_paced(publisher, sims, lambda d, t: d.alarm(t), devices, rate,
                                                 on_sent=on_sent)):
            for k in range(restarts):
                target = devices * (k + 1) // (restarts + 1)
                wait_for(lambda t=target: sent_box[0] >= t, 600, what="the storm to get going")
                broker.stop()
                time.sleep(down_s)
                broker.start()
                back = time.monotonic()
                wait_for(service.ready, 60, interval_s=0.05, what="ingest to resubscribe")
                back_to_ready.append(time.monotonic() - back)
        publisher.wait_acknowledged()
        recovered_at = time.monotonic()
        try:
            wait_for(lambda: account_alarms(service, records, 1)[1] == 0, 60 + devices / 200, interval_s=0.5,
                     what="every alarm counted")
        except TimeoutError:
            pass
        recovery = time.monotonic() - recovered_at + max(back_to_ready, default=0)
        time.sleep(1)
        opened, lost, doubled = account_alarms(service, records, 1)
        return FaultReport(
            "Mosquitto restart under load",
            f"graceful restart x{restarts}, {down_s:.0f} s down, {devices:,} detectors alarming at {rate:.0f}/s",
            publisher.acknowledged, opened, lost, doubled, recovery,
            details={"broker_up_to_ingest_subscribed_s": "/".join(f"{s:.1f}" for s in back_to_ready),
                     "service_restarted": service.starts > 1})
    finally:
        if publisher is not None:
            publisher.close()
        service.close()


def _parse_ms(text: str | None) -> int | None:
    if text is None:
        return None
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def restart_with_pending_deadlines(workdir: Path, broker: MosquittoServer, *, incidents: int = 20,
                                   downtime_s: float = 70.0, shift_clock: bool = True) -> FaultReport:
    """Escalation deadlines pending when the service dies (SIGKILL); it comes back after ``downtime_s``.

    ``incidents`` detectors alarm (policy "fire": the first step waits 60 s for an
    acknowledgement). The service is killed and comes back after ``downtime_s``, past every
    deadline: each incident must climb exactly one step at once (its audit shows one
    ``escalate``), and the next deadline must be kept on time after a second crash, neither
    early nor lost. With ``shift_clock`` the downtime is simulated by starting the service
    with a clock that far ahead; without it the command really waits.
    """
    service = ServiceProcess(workdir, broker, alert_tick_s=0.2)
    publisher = None
    offset = 0

    def start(shift_ms: int) -> float:
        return service.start(clock_offset_ms=shift_ms if shift_clock else None)

    try:
        start(0)
        records = storm_devices(service.hierarchy, incidents)
        service.register(records)
        publisher = Devices(broker, connections=1)
        for i, r in enumerate(records):
            publisher.publish(i, SmokeDetectorSim(r.device_id, seq=now_ms()).alarm(now_ms()))
        publisher.wait_acknowledged()
        buildings = {r.building_id for r in records}
        ours = {r.device_id for r in records}

        def mine() -> list[dict[str, Any]]:
            return [i for i in service.incidents(buildings) if i["condition"] == SMOKE_ALARM and i["device_id"] in ours]

        first = wait_for(lambda: len(found := mine()) == incidents and found, 30, what="the incidents to open")
        first_deadline = max(_parse_ms(i["next_escalation_at"]) or 0 for i in first)
        service.kill()

        # Down past every first-step deadline.
        if shift_clock:
            offset = int(downtime_s * 1000)
        else:
            time.sleep(downtime_s)
        restarted_at = time.monotonic()
        ready_s = start(offset)

        def escalated(step: int) -> list[dict[str, Any]] | None:
            found = mine()
            return found if all(i["escalation_step"] >= step for i in found) and len(found) == incidents else None

        after = wait_for(lambda: escalated(1), 30, interval_s=0.1, what="late deadlines to fire")
        late_fired_s = time.monotonic() - restarted_at
        if now_ms() + offset <= first_deadline:
            raise RuntimeError("the service came back before the deadlines it should find late")
        time.sleep(1.0)  # a few more ticks: a late deadline climbs one step, not several
        after = mine()
        audits = [service.get(f"/api/incidents/{i['id']}")["audit"] for i in after]
        escalations = Counter(sum(a["action"] == "escalate" for a in audit) for audit in audits)
        too_many = sum(n for count, n in escalations.items() if count > 1)
        missing = escalations.get(0, 0) + (incidents - len(after))

        # Second crash with the next deadline still ahead: it must fire on time, not before, after the restart.
        second_deadline = min(_parse_ms(i["next_escalation_at"]) or 0 for i in after)
        service.kill()
        lead_ms = 6000
        if shift_clock:
            offset = second_deadline - lead_ms - now_ms()  # come back 6 s before the deadline
        else:
            time.sleep(max(0.0, (second_deadline - lead_ms - now_ms()) / 1000))
        start(offset)
        early = sum(i["escalation_step"] >= 2 for i in mine()) if now_ms() + offset < second_deadline else 0
        wait_for(lambda: escalated(2), 60, interval_s=0.1, what="the pending deadline to fire")
        fired_late_by_ms = now_ms() + offset - second_deadline
        return FaultReport(
            "service down with deadlines pending",
            f"SIGKILL, down {downtime_s:.0f} s{' (shifted clock)' if shift_clock else ''}, {incidents} open incidents; "
            "then SIGKILL again 6 s before the next deadline",
            incidents, len(after), missing, too_many, late_fired_s, unit="incidents escalated",
            details={"late_deadlines_fired_after_start_s": f"{late_fired_s:.1f}", "start_to_ready_s": f"{ready_s:.1f}",
                     "escalated_before_deadline": early, "next_deadline_fired_late_by_ms": fired_late_by_ms})
    finally:
        if publisher is not None:
            publisher.close()
        service.close()


# --- the clock-shifted launcher (python -m tooling.chaos --clock-offset-ms N) ------------------


def _serve_shifted(argv: Sequence[str]) -> int:
    """``WanliService`` from ``WANLI_*`` settings with a clock ``N`` ms ahead of the wall, until SIGTERM."""
    import logging

    from wanli.runtime import WanliService
    from wanli.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m tooling.chaos")
    parser.add_argument("--clock-offset-ms", type=int, required=True)
    offset = parser.parse_args(argv).clock_offset_ms
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        service = WanliService(settings, clock_ms=lambda: now_ms() + offset)
        await service.start()
        print(f"serving {service.http_url} with the clock {offset / 1000:+.0f} s off the wall", flush=True)
        await stop.wait()
        await service.stop()

    asyncio.run(main())
    return 0


if __name__ == "__main__":
    sys.exit(_serve_shifted(sys.argv[1:]))
