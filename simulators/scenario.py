"""Scenarios: a scripted story played against a running system, and what it must lead to.

A scenario (one module in ``simulators/scenarios/``) is a ``Scenario``: the place whose
devices it simulates, how fast its clock runs, a ``play(stage)`` script, and its expected
outcomes (``simulators.expectations``). ``run_scenario`` plays it:

1. the population of the place is built and registered with the service;
2. every device comes online and lives at its real cadence while the script runs: the
   script makes things happen (``device.burn``, ``stage.send``), lets simulated time pass
   (``stage.wait``: at the clock's speed; ``stage.skip``: jumping ahead, hour by hour),
   marks moments and calls checkpoints;
3. micro fire stations among the devices answer the dispatches the service sends them
   (a subscriber on ``dispatch/v1/{street}/fire_station/+/duty``; or, when every device has
   its own connection and credentials, each station on its own duty topic), after human delays;
4. a watcher polls ``/api/incidents`` and notes when each incident was first seen at each
   tier; at each checkpoint and at the end the expectations are judged from the API
   (incidents, dead-letter counts, ingest stats, the devices' health).

The result (``ScenarioResult``) lists each expectation met or unmet with what was seen.

Time. The script's clock is a ``SimClock``. When the service shares it (a service started
for the scenario with ``running_in_thread(settings, clock.now_ms)``: ``wanli.embedded_scenario``),
the clock may run fast and jump, and device timestamps, the service's ts checks, rule
windows, silence timers and escalation deadlines all move together. Against a service on
the wall clock the scenario runs at speed 1 and a script that needs to ``skip`` refuses
(``ScenarioError``) rather than produce timestamps the service would reject as
``ts_future``.
"""

from __future__ import annotations

import csv
import io
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from devices.credentials import FIRE_STATION_KIND, station_dispatch_topic
from devices.drill import is_drill, real_id
from devices.hierarchy import Hierarchy, hierarchy_from_dict, load_hierarchy
from devices.registry import DeviceRecord
from devices.street_generator import generate_street
from devices.topics import dispatch_topic
from simulators.clock import SimClock, next_local_time_ms, shanghai
from simulators.devices.base import Publication, SimulatedDevice
from simulators.drill import DrillView, drill_rows, drill_topic
from simulators.expectations import Evidence, Expectation, Outcome, iso_ms
from simulators.population import Population, Row, place_rows
from simulators.publisher import BrokerAddress, DevicePublishers, MqttPublisher
from foundation.errors import WanliError
from foundation.mqtt import Subscriber
from foundation.service_clock import wall_ms

log = logging.getLogger(__name__)


class ScenarioError(WanliError):
    """A scenario cannot run as asked (unknown name, a jump on a clock the service does not share…)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    summary: str
    play: Callable[[Stage], None]
    expect: tuple[Expectation, ...]
    buildings: tuple[str, ...] = ()
    communities: tuple[str, ...] = ()
    rows: Callable[[Hierarchy], list[Row]] | None = None  # a custom choice of devices instead of whole places
    hierarchy: str = "sample"  # "sample": devices/data/wanli.json; "street": the generated street (477 high-rises)
    speed: float = 60.0
    start_local: tuple[int, int] | None = None  # Shanghai (hour, minute) the story starts at
    needs_shared_clock: bool = False  # it jumps ahead (days, hours): only a service sharing its clock can follow
    duration_s: float = 0.0  # how long its script lasts in simulated time (0: unknown), for progress and time left
    per_device_connections: bool = False  # each device its own MQTT connection with a last will
    marks: Mapping[str, str] = field(default_factory=dict)  # its marks in Chinese words, for the testers' page

    def population(self, hierarchy: Hierarchy, seed: int = 0, drill: bool = False) -> Population:
        """Its devices; as a drill, their drill twins (``DRILL-…``: simulators/drill.py)."""
        rows = self.rows(hierarchy) if self.rows else place_rows(hierarchy, building_ids=self.buildings,
                                                                 community_ids=self.communities)
        return Population.from_rows(drill_rows(rows) if drill else rows, hierarchy.street_id, seed=seed,
                                    start_seq=wall_ms())

    def load_hierarchy(self) -> Hierarchy:
        return hierarchy_from_dict(generate_street()) if self.hierarchy == "street" else load_hierarchy()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "summary": self.summary, "speed": self.speed,
                "needs_shared_clock": self.needs_shared_clock,
                "expect": [e.describe() for e in self.expect], "expect_zh": self.expect_zh()}

    def expect_zh(self) -> list[str]:
        """Its expected outcomes as Chinese sentences, for the testers' page."""
        return [e.describe_zh(self.marks) for e in self.expect]


@dataclass
class Progress:
    """What a run is doing now, for the CLI's live line and the tester page (read from other threads)."""

    scenario: str = ""
    phase: str = "starting"
    sent: int = 0
    acked: int = 0
    devices: int = 0
    sim_ms: int = 0
    started_real: float = field(default_factory=time.monotonic)
    log: list[str] = field(default_factory=list)
    done: bool = False
    # How far the story is (0..1) and how long it has left in real seconds, when it knows (a scenario's
    # script does: Scenario.duration_s); None for a population playing until stopped.
    fraction: float | None = None
    left_s: float | None = None

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started_real
        return self.sent / elapsed if elapsed > 0 else 0.0

    def say(self, text: str) -> None:
        self.phase = text
        self.log.append(text)
        del self.log[:-200]


@dataclass
class ScenarioResult:
    scenario: str
    outcomes: list[Outcome]
    sent: int
    sim_seconds: float
    real_seconds: float
    log: list[str]

    @property
    def ok(self) -> bool:
        return all(o.met for o in self.outcomes)

    @property
    def unmet(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.met]

    def report(self) -> str:
        lines = [(f"scenario {self.scenario}: {'PASSED' if self.ok else 'FAILED'} — {self.sent:,} messages, "
                 f"{self.sim_seconds / 60:.1f} simulated minutes in {self.real_seconds:.1f} s")]
        lines += [f"  {'✓' if o.met else '✗'} [{o.checkpoint}] {o.expectation}: {o.detail}" for o in self.outcomes]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "ok": self.ok, "sent": self.sent, "sim_seconds": self.sim_seconds,
                "real_seconds": self.real_seconds, "outcomes": [o.as_dict() for o in self.outcomes]}


class ApiClient:
    """The few API calls a scenario makes: what the screens and maintainers see."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None) -> None:
        self._http = httpx.Client(base_url=base_url, headers=headers or {}, timeout=30)

    def login(self, username: str, password: str) -> None:
        """Sign in as a person would (the session cookie is kept for the calls that follow)."""
        resp = self._http.post("/api/auth/login", json={"username": username, "password": password})
        if resp.status_code >= 400:
            raise ScenarioError(f"signing in as {username} failed: {resp.status_code} {resp.text[:200]}")
        self._http.headers["X-CSRF-Token"] = resp.json().get("csrf_token", "")  # the session's changes carry it

    def _get(self, path: str, **params: Any) -> Any:
        resp = self._http.get(path, params=params)
        resp.raise_for_status()
        return resp.json()

    def incidents(self) -> list[dict[str, Any]]:
        return self._get("/api/incidents", limit=1000)  # type: ignore[no-any-return]

    def dead_letter_counts(self) -> dict[str, int]:
        return self._get("/api/dead-letters/counts")  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return self._get("/api/stats")  # type: ignore[no-any-return]

    def devices(self, ids: set[str]) -> list[dict[str, Any]]:
        out, offset = [], 0
        while True:
            page = self._get("/api/devices", limit=10_000, offset=offset)
            out += [d for d in page if d["device_id"] in ids]
            if len(page) < 10_000:
                return out
            offset += len(page)

    def import_devices(self, records: Sequence[DeviceRecord]) -> None:
        """Register through the API, as a maintainer's CSV import would."""
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["device_id", "kind", "building_id", "floor", "unit", "label"])
        for r in records:
            writer.writerow([r.device_id, r.kind, r.building_id, "" if r.floor is None else r.floor, r.unit, r.label])
        resp = self._http.post("/api/devices/import", content=text.getvalue().encode(),
                               headers={"content-type": "text/csv"}, params={"actor": "simulator"})
        if resp.status_code >= 400:
            raise ScenarioError(f"registering the scenario's devices failed: {resp.status_code} {resp.text[:300]}")
        rejected = resp.json().get("rejected") or []
        if rejected:
            raise ScenarioError(f"the service refused {len(rejected)} of the scenario's devices, e.g. {rejected[:3]}")

    def register_drill(self, records: Sequence[DeviceRecord]) -> None:
        """Register a drill's devices (``DRILL-…`` only: ``POST /api/drills/devices``)."""
        body = {"devices": [{"device_id": r.device_id, "kind": r.kind, "building_id": r.building_id, "floor": r.floor,
                             "unit": r.unit, "label": r.label} for r in records]}
        resp = self._http.post("/api/drills/devices", json=body)
        if resp.status_code >= 400:
            raise ScenarioError(f"registering the drill's devices failed: {resp.status_code} {resp.text[:300]}")

    def end_drill(self, device_ids: Sequence[str]) -> int:
        """Archive a drill's devices (``POST /api/drills/end``); how many were retired."""
        resp = self._http.post("/api/drills/end", json={"device_ids": list(device_ids)})
        if resp.status_code >= 400:
            raise ScenarioError(f"archiving the drill's devices failed: {resp.status_code} {resp.text[:300]}")
        return int(resp.json()["count"])

    def clock(self) -> dict[str, Any]:
        """The service's clock (``GET /api/clock``): its time now and its speed."""
        return self._get("/api/clock")  # type: ignore[no-any-return]

    def device(self, device_id: str) -> dict[str, Any] | None:
        """One registered device (None: not registered)."""
        resp = self._http.get(f"/api/devices/{device_id}")
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._http.close()


class _Watcher(threading.Thread):
    """Polls the incidents and notes (on the simulated clock) when each was first seen at each tier."""

    def __init__(self, api: ApiClient, clock: SimClock, interval_s: float = 0.1, view: DrillView | None = None) -> None:
        super().__init__(name="scenario-watcher", daemon=True)
        self.api, self.clock, self.interval_s, self.view = api, clock, interval_s, view
        self.tier_seen_ms: dict[tuple[str, str], int] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            self.poll()

    def poll(self) -> None:
        try:
            now = self.clock.now_ms()
            found = self.api.incidents()
            for inc in self.view.incidents(found) if self.view is not None else found:
                if inc.get("tier"):
                    # It reached its tier when it last changed step, which is at most when it was last updated:
                    # a bound tighter than when this poll happened to look.
                    at = min(now, iso_ms(inc["updated_at"]))
                    key = (inc["id"], inc["tier"])
                    self.tier_seen_ms[key] = min(self.tier_seen_ms.get(key, at), at)
        except httpx.HTTPError as exc:
            log.debug("scenario watcher: %s", exc)


class StationInbox:
    """The dispatch notices simulated stations received over their own connections (``DevicePublishers``)."""

    def __init__(self) -> None:
        self.notices: queue.Queue[tuple[str, bytes]] = queue.Queue()

    def put(self, station_id: str, body: bytes) -> None:
        self.notices.put((station_id, body))

    def close(self) -> None:
        """Nothing of its own to close: the stations' connections are the sink's."""


class DispatchListener:
    """Hands the dispatch notices addressed to simulated micro fire stations to them (one connection for all)."""

    def __init__(self, broker: BrokerAddress, street: str, username: str = "", password: str = "",
                 drill: bool = False) -> None:
        self.notices: queue.Queue[tuple[str, bytes]] = queue.Queue()
        # A drill's stations are dispatched on drill/v1 (devices/drill.py): they never read a real station's topic.
        topic = dispatch_topic(street, FIRE_STATION_KIND, "+", "duty", drill)
        self._subscriber = Subscriber(broker.host, broker.port, topic,
                                      lambda m: self.notices.put((m.topic.split("/")[4], m.payload)),
                                      client_id=f"wanli-sim-dispatch-{time.time_ns()}", username=username,
                                      password=password, keepalive_s=30)
        if not self._subscriber.wait(10):
            log.warning("the dispatch subscription was not confirmed: simulated stations may not answer")

    def close(self) -> None:
        self._subscriber.close()


class Stage:
    """What a scenario's script works with: its devices, its clock, and the wire."""

    def __init__(self, scenario: Scenario, population: Population, clock: SimClock, sink: MqttPublisher | DevicePublishers,
                 api: ApiClient, progress: Progress, stop: threading.Event, evidence: Evidence,
                 listener: DispatchListener | StationInbox | None = None) -> None:
        self.scenario, self.population, self.clock, self.sink = scenario, population, clock, sink
        self.api, self.progress, self._stop, self.evidence, self._listener = api, progress, stop, evidence, listener
        self.outcomes: list[Outcome] = []
        self.last_sent: dict[str, Publication] = {}  # device id → the last message sent for it
        self._received_before = 0
        self.drill = False  # a drill: every message goes out as a drill twin's (simulators/drill.py)
        self._started_real = time.monotonic()
        self.view = DrillView(set(population.devices), drill=False)

    # -- the story ----------------------------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return self.clock.now_ms()

    def local_time(self) -> str:
        """The story's clock now, Shanghai time (HH:MM): what its script says happened when."""
        return shanghai(self.now_ms()).strftime("%H:%M")

    def device(self, device_id: str) -> SimulatedDevice:
        return self.population.device(device_id)

    def say(self, text: str) -> None:
        log.info("scenario %s: %s", self.scenario.name, text)
        self.progress.say(text)

    def mark(self, name: str) -> int:
        at = self.evidence.marks[name] = self.now_ms()
        if name == "start":
            self._started_real = time.monotonic()
        return at

    def changed(self, device: SimulatedDevice) -> None:
        """Something was scheduled on ``device``: wake it in time."""
        self.population.touch(device)

    def send(self, publications: Sequence[Publication]) -> None:
        for topic, payload in publications:
            if self.drill:
                topic = drill_topic(topic)
            self.sink.publish(topic, payload)
            parts = topic.split("/")
            if len(parts) == 6:
                self.last_sent[parts[4]] = (topic, payload)
        self.progress.sent = self.sink.sent
        self.progress.acked = self.sink.acked

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass at the clock's speed, every device living its life."""
        target = self.now_ms() + int(seconds * 1000)
        while not self._stop.is_set():
            now = min(self.now_ms(), target)
            self._pump(now)
            self._tell_progress(now)
            if now >= target:
                return
            gap = self.clock.real_seconds(max(0, min(self.population.next_due_ms(), target) - self.now_ms()))
            time.sleep(min(0.05, max(0.002, gap)))
        raise ScenarioStopped(self.scenario.name)

    def _tell_progress(self, now_ms: int) -> None:
        """How far the story is and how long it has left (the script's length in simulated time, at the pace seen)."""
        total_s = self.scenario.duration_s
        start = self.evidence.marks.get("start")
        if not total_s or start is None:
            return
        done_s = max(0.0, (now_ms - start) / 1000)
        self.progress.fraction = min(1.0, done_s / total_s)
        # The pace seen so far (simulated seconds per real second): a service's clock may run at any speed,
        # and its jumps wait for ingest, so what was measured beats what the clock claims.
        real_s = time.monotonic() - self._started_real
        pace = done_s / real_s if real_s > 1 and done_s > 0 else self.clock.speed
        self.progress.left_s = max(0.0, total_s - done_s) / pace

    def skip(self, seconds: float, step_s: float = 3600.0) -> None:
        """Jump ``seconds`` ahead in steps of ``step_s``; each step's messages are sent and ingested before the next.

        On a service's accelerated clock (``WANLI_CLOCK_SPEED``, read through the API) nobody can jump: the
        time passes at that speed instead, every device living it (docs/simulators.md)."""
        if not self.clock.shared and self.clock.speed > 1:
            self.wait(seconds)
            return
        if not self.clock.shared:
            raise ScenarioError(f"scenario {self.scenario.name} jumps {seconds / 3600:g} h ahead: it needs a service "
                                f"that shares its simulated clock (run it embedded, not against --api)")
        left = int(seconds * 1000)
        while left > 0:
            if self._stop.is_set():
                raise ScenarioStopped(self.scenario.name)
            step = min(left, int(step_s * 1000))
            self.clock.advance(step)
            left -= step
            self._pump(self.now_ms())
            self._tell_progress(self.now_ms())
            self.settle(timeout_s=30)
            time.sleep(0.1)  # the service's ticker looks at the new time

    def settle(self, timeout_s: float = 15.0) -> bool:
        """Wait until the broker acknowledged what was sent and the service received it all."""
        self.sink.flush(timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.api.stats()["received"] - self._received_before >= self.sink.sent:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
        return False

    def checkpoint(self, name: str) -> None:
        """Judge the expectations that belong to this moment of the story."""
        self.settle()
        time.sleep(0.3)  # the service's ticker and the watcher see the latest
        self.outcomes += judge([e for e in self.scenario.expect if e.at == name], self._gather())

    # -- machinery ----------------------------------------------------------------------------------------------------

    def _pump(self, now_ms: int) -> None:
        if self._listener is not None:
            while True:
                try:
                    station_id, body = self._listener.notices.get_nowait()
                except queue.Empty:
                    break
                station = self.population.devices.get(station_id)
                if station is not None and hasattr(station, "on_dispatch"):
                    dispatch_id = station.on_dispatch(body, now_ms)
                    if dispatch_id:
                        self.say(f"{real_id(station_id)}{'（演练）' if is_drill(station_id) else ''} 收到派单 {dispatch_id}")
                        self.population.touch(station)
        self.send(self.population.tick(now_ms))
        self.progress.sim_ms = now_ms

    def _gather(self) -> Evidence:
        """What the API shows of this run only (simulators/drill.py ``DrillView``)."""
        ev, view = self.evidence, self.view
        ev.incidents = view.incidents(self.api.incidents())
        ev.dead_letters = view.dead_letters(self.api.dead_letter_counts())
        ev.stats = view.stats(self.api.stats())
        ev.devices = view.devices(self.api.devices(set(self.population.devices)))
        return ev


class ScenarioStopped(ScenarioError):
    def __init__(self, name: str) -> None:
        super().__init__(f"scenario {name} was stopped")


def judge(expectations: Sequence[Expectation], evidence: Evidence) -> list[Outcome]:
    return [e.check(evidence) for e in expectations]


def run_scenario(scenario: Scenario, *, api: ApiClient, broker: BrokerAddress, clock: SimClock,
                 register: Callable[[list[DeviceRecord]], None], hierarchy: Hierarchy | None = None,
                 passwords: dict[str, str] | None = None, progress: Progress | None = None,
                 stop: threading.Event | None = None, seed: int = 0, drill: bool = False,
                 end: Callable[[list[str]], None] | None = None) -> ScenarioResult:
    """Play ``scenario`` against the running system and judge its expected outcomes.

    ``drill``: on a live street, as a drill (its devices the drill twins, simulators/drill.py); ``end`` is
    called with its devices' ids when it ends, however it ends (to archive them). Only the incidents its own
    devices raised after it started are judged, and dead letters and ingest figures from where they stood."""
    if scenario.needs_shared_clock and not clock.shared and clock.speed <= 1:
        raise ScenarioError(f"scenario {scenario.name} jumps hours ahead: it needs a service on its own simulated "
                            f"clock (`wanli scenario run {scenario.name}` starts one), not one on the wall clock")
    progress = progress or Progress()
    progress.scenario = scenario.name
    stop = stop or threading.Event()
    hierarchy = hierarchy or scenario.load_hierarchy()
    population = scenario.population(hierarchy, seed, drill=drill)
    progress.devices = len(population)
    progress.say(f"正在注册 {len(population)} 台{'演练' if drill else ''}设备")
    register(population.records)
    try:
        return _play(scenario, population, api=api, broker=broker, clock=clock, hierarchy=hierarchy, passwords=passwords,
                     progress=progress, stop=stop, drill=drill)
    finally:  # however it ends (finished, stopped, the broker refusing it): its devices archived
        if end is not None:
            try:
                end(list(population.devices))
                progress.log.append(f"{len(population)} 台演练设备已归档" if drill else "设备已归档")
            except Exception as exc:  # the run's own result stands; say what is left behind
                log.warning("scenario %s: its devices could not be archived: %s", scenario.name, exc)
                progress.log.append(f"演练设备未能归档：{exc}")


def _play(scenario: Scenario, population: Population, *, api: ApiClient, broker: BrokerAddress, clock: SimClock,
          hierarchy: Hierarchy, passwords: dict[str, str] | None, progress: Progress, stop: threading.Event,
          drill: bool) -> ScenarioResult:
    if clock.shared:
        clock.set_speed(scenario.speed)
    started_real, evidence = time.monotonic(), Evidence(mark_names=scenario.marks)
    sink: MqttPublisher | DevicePublishers
    listener: DispatchListener | StationInbox | None = None
    if passwords is not None or scenario.per_device_connections:
        # Each device its own connection; a station's duty terminal reads its dispatches on its own (as the ACL allows).
        inbox = StationInbox()
        duty = {s.device_id: station_dispatch_topic(hierarchy.street_id, s.device_id) for s in population.stations()}
        sink = DevicePublishers(broker, passwords, now_ms=clock.now_ms,
                                wills={d.device_id: d.offline for d in population.devices.values()},
                                dispatch_topics=duty, on_dispatch=inbox.put,
                                usernames={r.device_id: f"{hierarchy.street_id}/{r.kind}/{r.device_id}"
                                           for r in population.records})
        listener = inbox if duty else None
    else:
        sink = MqttPublisher(broker, client_id=f"wanli-sim-{scenario.name[:20]}-{time.time_ns() % 10**9}")
        listener = DispatchListener(broker, hierarchy.street_id, drill=drill) if population.stations() else None
    stage = Stage(scenario, population, clock, sink, api, progress, stop, evidence, listener)
    stage.drill = drill
    watcher = _Watcher(api, clock, view=stage.view)
    try:
        stats = api.stats()
        stage._received_before = stats["received"]
        stage.view = DrillView(set(population.devices), since_ms=clock.now_ms() - 1000, drill=drill,
                               dead_letters_before=dict(api.dead_letter_counts()), stats_before=dict(stats))
        watcher.view = stage.view
        watcher.start()
        start_ms = stage.mark("start")
        progress.say(f"{len(population)} 台设备上线")
        if isinstance(sink, DevicePublishers):
            sink.connect_all(list(population.devices))
        stage.send(population.start(start_ms))
        scenario.play(stage)
        stage.settle()
        time.sleep(0.3)
        watcher.poll()
        evidence.tier_seen_ms = watcher.tier_seen_ms
        stage.outcomes += judge([e for e in scenario.expect if e.at == "end"], stage._gather())
        progress.say("完成")
        return ScenarioResult(scenario.name, stage.outcomes, sink.sent, (clock.now_ms() - start_ms) / 1000,
                              time.monotonic() - started_real, list(progress.log))
    finally:
        progress.done = True
        progress.left_s = 0.0 if progress.fraction is not None else None
        watcher.stop_event.set()
        if watcher.is_alive():
            watcher.join(10)  # its poll finished before the caller closes the API client it uses
        if listener is not None:
            listener.close()
        sink.close()


def start_ms_for(scenario: Scenario, now_ms: int | None = None) -> int:
    """Where a scenario's clock starts: its local time of day next, or now."""
    now_ms = wall_ms() if now_ms is None else now_ms
    if scenario.start_local is None:
        return now_ms
    return next_local_time_ms(now_ms, *scenario.start_local)
