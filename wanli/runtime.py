"""Composition of the main job: every piece built from one ``Settings`` and started in order.

    embedded broker (if no WANLI_MQTT_URL) → stores → alert engine → ingest consumer
    → HTTP API and operations screen → simulated building (if enabled)

and stopped in the reverse order, so nothing in flight is cut off: the consumer finishes
its batch and leaves the rest with the broker for next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import Connection, Engine

from alerts.context import RegistryContext
from alerts.dispatch import Dispatcher, NoticePublisher
from alerts.notify.service import Notifier
from alerts.outbox import Outbox
from alerts.rules import default_rules
from alerts.service import AlertService
from alerts.thresholds import Thresholds, load_overrides
from alerts.incidents import Incident
from alerts.policy_desk import DryRun, PolicyDesk, hierarchy_roles
from alerts.policy_store import PolicyStore, load_in_force
from alerts.store import IncidentStore
from alerts.system_faults import SystemFaults
from dashboards.api import create_app
from dashboards.deps import AppContext
from dashboards.live import LiveFeed, follow
from devices.broker_access import BrokerAccess, MqttCanaryLogin
from devices.broker_dynsec import DynamicSecurity, admin_password
from devices.catalog import KINDS
from devices.credentials import BrokerAuthFiles, CredentialStore, platform_account
from devices.hierarchy import Hierarchy, load_hierarchy
from devices.registry import DeviceRegistry
from devices.reserved import ALARM_LANE_SUFFIX, DISPATCH_SUFFIX
from devices.topics import dispatch_street_filter
from ingest.dead_letters import DeadLetterStore
from ingest.decode import DecodeLimits
from ingest.embedded_broker import EmbeddedBroker
from ingest.mqtt_consumer import MqttConsumer
from ingest.pipeline import IngestPipeline, TelemetryOverflow
from ingest.rate_limit import DeviceRateLimits
from ingest.spool import Spool, SpoolDrainer
from ingest.telemetry import (InfluxV1TelemetryStore, InfluxV2TelemetryStore, LineProtocolStore, SqliteTelemetryStore,
                              TelemetryStore)
from simulators.building import BuildingSimulation, run_building
from wanli.broker_check import refuse_open_broker
from foundation.change_bus import DEVICES, INCIDENTS, NOTICES, POLICIES, ChangeBus, LocalChangeBus, PostgresChangeBus
from wanli.data_lifecycle import build_data_lifecycle
from foundation.db import create_schema, make_engine
from foundation.disk_guard import DiskGuard
from foundation.errors import StaleIncident, StoreUnavailable
from foundation.heap import HeapKeeper
from foundation.leases import DISPATCH, ESCALATION, INGEST, Fenced, InstanceLock, LeaseKeeper, LeaseStore, instance_name
from foundation.log_limit import LogLimiter
from wanli.notify_setup import build_notifier
from foundation.service_clock import ClockMs, ServiceClock, wall_ms
from wanli.settings import Mode, Settings, TelemetryBackend
from wanli.system_health import HealthThresholds, SystemHealth

log = logging.getLogger(__name__)


SERVICE_FILE = "service.json"  # where `wanli run` says where it listens, for the command line's hints


def write_service_file(data_dir: Path, http_url: str, mqtt_url: str) -> Path:
    """``{data_dir}/service.json``: the running service's addresses (no secret), removed when it stops."""
    path = Path(data_dir) / SERVICE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"http_url": http_url, "mqtt_url": mqtt_url, "pid": os.getpid()}), "utf-8")
    return path


def read_service_file(data_dir: Path) -> dict[str, str] | None:
    """What a service started with this data directory wrote (None: none, or it is not running any more)."""
    path = Path(data_dir) / SERVICE_FILE
    try:
        found = json.loads(path.read_text("utf-8"))
        os.kill(int(found["pid"]), 0)  # still there?
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"http_url": str(found["http_url"]), "mqtt_url": str(found["mqtt_url"])}


def make_telemetry_store(settings: Settings) -> TelemetryStore:
    match settings.telemetry_backend:
        case TelemetryBackend.SQLITE:
            return SqliteTelemetryStore(settings.telemetry_sqlite_path)
        case TelemetryBackend.INFLUXDB1:
            store = InfluxV1TelemetryStore(settings.influx_url, settings.influx_database,
                                           settings.influx_username, settings.influx_password)
            try:
                store.ensure_database()
            except StoreUnavailable as exc:  # ingest retries its writes; do not refuse to start alerting
                log.error("cannot create InfluxDB database %s yet: %s", settings.influx_database, exc)
            return store
        case TelemetryBackend.INFLUXDB2:
            return InfluxV2TelemetryStore(settings.influx_url, settings.influx_org, settings.influx_bucket,
                                          settings.influx_token)


@dataclass
class Services:
    settings: Settings
    engine: Engine
    hierarchy: Hierarchy
    registry: DeviceRegistry
    telemetry: TelemetryStore
    spool: Spool
    drainer: SpoolDrainer
    dead_letters: DeadLetterStore
    incidents: IncidentStore
    alerts: AlertService
    pipeline: IngestPipeline
    feed: LiveFeed
    broker_access: BrokerAccess
    outbox: Outbox
    dispatcher: Dispatcher
    disk_guard: DiskGuard
    notifier: Notifier | None = None
    policy_desk: PolicyDesk | None = None  # the escalation policies' versions: dry-run, apply, history
    bus: ChangeBus = LocalChangeBus()  # what other instances change (foundation/change_bus.py)
    leases: LeaseStore | None = None  # the roles' leases (foundation/leases.py)


def data_directories(settings: Settings) -> list[Path]:
    """Every directory the service writes to on this machine: the data dir, and the SQLite database's if elsewhere."""
    dirs = [settings.data_dir]
    url = settings.resolved_database_url
    if url.startswith("sqlite:///"):
        dirs.append(Path(url.removeprefix("sqlite:///")).parent)
    if settings.telemetry_backend is TelemetryBackend.SQLITE:
        dirs.append(settings.telemetry_sqlite_path.parent)
    return dirs


def policy_dry_run(incidents: IncidentStore, hierarchy: Hierarchy) -> DryRun:
    """The dry-run of a draft policy: the scenario library replayed, and past incidents (wanli/policy_replay.py)."""
    from wanli import policy_replay

    def past(from_ms: int, to_ms: int) -> list[Incident]:
        ended = incidents.history(since_ms=from_ms, until_ms=to_ms, limit=5000)
        active = [i for i in incidents.list(limit=5000) if from_ms <= i.opened_ms < to_ms and i.state.is_active]
        return [*ended, *active]

    def answered(incident: Incident) -> int | None:
        return incident.acknowledged_ms or incident.closed_ms

    return lambda current, draft, what: policy_replay.dry_run(current, draft, what, incidents=past,
                                                              answered_ms=answered, hierarchy=hierarchy)


def policy_stories() -> list[dict[str, Any]]:
    from wanli import policy_replay

    return policy_replay.library_choices()


def build_services(settings: Settings, clock_ms: ClockMs = wall_ms, instance: str = "") -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    create_schema(engine)
    # PostgreSQL may be shared by several instances: each tells the others what it changed. SQLite: one instance.
    shared = engine.dialect.name == "postgresql"
    bus: ChangeBus = PostgresChangeBus(engine, instance or instance_name()) if shared else LocalChangeBus()
    hierarchy = load_hierarchy(settings.hierarchy_file)
    registry = DeviceRegistry(engine, hierarchy, reserved_logins=settings.mqtt_logins(), bus=bus)
    incidents = IncidentStore(engine)

    rules = default_rules()
    thresholds = Thresholds(rules, lambda d: (rec.building_id if (rec := registry.find(d)) else ""),
                            load_overrides(settings.thresholds_file))
    ctx = RegistryContext(registry, thresholds)
    policy_store = PolicyStore(engine, bus)
    policies = load_in_force(policy_store, seed_file=settings.policy_file, now_ms=clock_ms(),
                             known_roles=hierarchy_roles(hierarchy), threshold_defaults=thresholds.defaults())
    ctx.set_policy_thresholds(policies.thresholds)
    notifier, give_act = build_notifier(settings, engine, hierarchy, incidents, clock_ms, bus)
    outbox = Outbox(engine, webhook=bool(settings.webhook_url),
                    plan=notifier.plan_notices if settings.notify_enabled else None)
    host, port = settings.mqtt_host_port
    # Several instances: the dispatcher's connection reads its notices back (the witness, alerts/dispatch.py), so
    # a notice the broker took from a dispatcher killed before its commit is not sent again by the next one.
    witness = {"witness_filter": ",".join(dispatch_street_filter(settings.street, drill) for drill in (False, True)),
               "on_witnessed": lambda ids: outbox.mark_witnessed(ids, clock_ms())} if shared else {}
    dispatcher = Dispatcher(outbox, NoticePublisher(host, port, client_id=f"{settings.mqtt_client_id}{DISPATCH_SUFFIX}",
                                                    username=settings.mqtt_login(DISPATCH_SUFFIX),
                                                    password=settings.mqtt_password, **witness),
                            settings.webhook_url, clock_ms)
    alerts = AlertService(incidents, ctx.locate, ctx, hierarchy, rules, outbox,
                          on_notices=lambda: (dispatcher.wake(), notifier.wake()), bus=bus, policies=policies)
    bus.subscribe(DEVICES, registry.reload)
    bus.subscribe(INCIDENTS, alerts.refresh)
    feed = live_feed(alerts, dispatcher, bus, engine)
    give_act(alerts.act)
    telemetry = make_telemetry_store(settings)
    # A store that takes line protocol gets the spool's rows as they are: built once, at append (ingest/spool.py)
    spool = Spool(settings.data_dir / "spool.db", max_points=settings.spool_max_points,
                  keep_lines=isinstance(telemetry, LineProtocolStore))
    drainer = SpoolDrainer(spool, telemetry, batch_points=settings.spool_drain_batch_points)
    dead_letters = DeadLetterStore(engine)
    disk_guard = DiskGuard(data_directories(settings), settings.disk_reserve_mb * 1_000_000, settings.disk_alert_fill)
    pipeline = IngestPipeline(KINDS, engine, registry, spool, dead_letters, alerts,
                              DecodeLimits(max_payload_bytes=settings.max_payload_bytes), clock_ms=clock_ms,
                              on_spooled=drainer.wake, disk_guard=disk_guard,
                              overflow=TelemetryOverflow(settings.telemetry_overflow),
                              rate_limits=DeviceRateLimits(settings.rate_limit_policy()),
                              log_limiter=LogLimiter(int(settings.log_repeat_interval_s * 1000)))
    access = BrokerAccess(
        registry, CredentialStore(engine), clock_ms,
        files=BrokerAuthFiles(settings.broker_auth_dir) if settings.broker_auth_dir else None,
        pid_file=settings.broker_pid_file,
        service_accounts={platform_account(login): settings.mqtt_password for login in settings.mqtt_logins()}
        if settings.broker_auth_dir else None,
        canary=MqttCanaryLogin(*settings.mqtt_host_port) if settings.broker_auth_dir else None,
        unconfirmed_after_s=settings.broker_access_unconfirmed_s,
        resend_after_s=settings.broker_access_resend_ms / 1000,
        # its admin password is derived from the service's secrets (the same after a restart: no reload needed to
        # let it in); it reaches the broker in a file generation before the writer logs in with it
        overlay=DynamicSecurity(*settings.mqtt_host_port,
                                admin_password(settings.auth_secret_key.get_secret_value(), settings.mqtt_password))
        if settings.broker_auth_dir and settings.broker_dynamic_security else None,
        overlay_limit=settings.broker_dynamic_security_limit,
        overlay_batch_max=settings.broker_dynamic_security_batch,
    )
    policy_desk = PolicyDesk(policy_store, alerts, known_roles=hierarchy_roles(hierarchy),
                             threshold_defaults=thresholds.defaults(), clock_ms=clock_ms,
                             dry_run=policy_dry_run(incidents, hierarchy), stories=policy_stories())
    bus.subscribe(POLICIES, policy_desk.follow)
    return Services(settings, engine, hierarchy, registry, telemetry, spool, drainer, dead_letters, incidents, alerts,
                    pipeline, feed, access, outbox, dispatcher, disk_guard, notifier,
                    policy_desk=policy_desk,
                    bus=bus, leases=LeaseStore(engine, wall_ms))  # leases on real time, whatever the service's clock


def live_feed(alerts: AlertService, dispatcher: Dispatcher, bus: ChangeBus, engine: Engine) -> LiveFeed:
    """The screens' feed, following the incidents and their notices (dashboards/live.py), built here whether or
    not an HTTP app is built over it. With several instances the dispatcher's instance tells the others when an
    incident's notices went (their screens show who was told too); an incident's changes travel already."""
    feed = LiveFeed()
    notices_changed = follow(feed, alerts)

    def sent(incident_ids: set[str]) -> None:
        notices_changed(incident_ids)
        if bus.shared:
            with engine.begin() as conn:
                bus.announce(conn, NOTICES, incident_ids)

    dispatcher.on_sent = sent
    bus.subscribe(NOTICES, lambda ids: notices_changed(ids if ids is not None else [i.id for i in alerts.active()]))
    return feed


# How long a thread may hold the interpreter before another waiting for it gets a turn (Python's
# default: 5 ms). The service's threads that write SQLite or read sockets give the interpreter up
# around every call and then wait to get it back: behind a busy thread, 5 ms each time (the
# "convoy"), so a 500-row write waited up to seconds while holding the registry's lock, and an
# alarm with it. Measured with `wanli bench alerts` (docs/benchmarks.md). Set only by a service
# that owns its process (``owns_process``), as the heap keeper is kept only by one.
SWITCH_INTERVAL_S = 0.0005


class WanliService:
    """The whole main job in one process. ``start`` returns once everything listens."""

    def __init__(self, settings: Settings, clock_ms: ClockMs = wall_ms, *,
                 owns_process: bool = False) -> None:
        """``owns_process``: the process is the service's alone (``wanli run``, a benchmark), so it may set the
        interpreter's switch interval and keep the heap (``foundation/heap.py``); a service hosted in a process that
        does other things (the test run, a drill) leaves both as they are."""
        self.settings = settings
        self.clock: ServiceClock | None = None
        if clock_ms is wall_ms and settings.test_clock:  # a tester's clock (refused in production)
            start = int(settings.clock_start.timestamp() * 1000) if settings.clock_start is not None else None
            self.clock = ServiceClock(settings.clock_speed, start)
            clock_ms = self.clock.now_ms
            log.warning("the service runs on a tester's clock: speed=%s start=%s", settings.clock_speed,
                        settings.clock_start)
        self._clock_ms = clock_ms
        self._owns_process = owns_process
        # Stable across restarts of the same data directory (one process at a time: InstanceLock), so a
        # restarted instance renews its own leases at once instead of waiting for them to lapse.
        self.instance = settings.instance_name or instance_name(settings.data_dir)
        self.services = build_services(settings, clock_ms, self.instance)
        svc = self.services
        self.shared = svc.bus.shared  # several instances may run on this database
        assert svc.leases is not None
        # Which instance runs ingest, the escalation clock and the dispatcher (foundation/leases.py); on SQLite the only one.
        # Ingest is held per MQTT session (its client id): instances with the same client id are one ingest, held
        # by one of them at a time; instances with their own client ids (topic families) each ingest their own.
        self.ingest_role = f"{INGEST}:{settings.mqtt_client_id}"
        self.keeper = LeaseKeeper(svc.leases, self.instance,
                                  [self.ingest_role if r == INGEST else r for r in settings.role_list],
                                  ttl_s=settings.lease_ttl_s,
                                  renew_s=settings.lease_renew_s, on_gain=self._gain_role, on_lose=self._lose_role)
        self._role_lock = threading.Lock()
        self._stopping = False
        self._instance_lock: InstanceLock | None = None
        svc.dispatcher.gate = svc.dispatcher.publisher.gate = lambda: self.keeper.holds(DISPATCH)
        # The notifier starts its rounds where the dispatch role is held only once the attempts the last holder
        # left half-sent are settled (Notifier.recover: never sent again; the next contact point instead).
        self._notifier_ready = threading.Event()
        if svc.notifier is not None:
            svc.notifier.gate = lambda: self.keeper.holds(DISPATCH) and self._notifier_ready.is_set()
        # Retention, roll-up, the monthly archive and disk growth (wanli/data_lifecycle.py), in a thread of its own.
        self.lifecycle = build_data_lifecycle(settings, self.services.engine, clock_ms, self.services.hierarchy.street_id)
        self.broker: EmbeddedBroker | None = None
        self.consumer: MqttConsumer | None = None
        self._server: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_sim = asyncio.Event()
        self._stop_ticker = threading.Event()
        self._ticker: threading.Thread | None = None
        self._pruner: threading.Thread | None = None
        self.http_url = ""
        self.health = SystemHealth(
            pipeline=svc.pipeline, spool=svc.spool, drainer=svc.drainer, telemetry=svc.telemetry,
            disk_guard=svc.disk_guard, outbox=svc.outbox,
            thresholds=HealthThresholds(
                telemetry_down_s=settings.fault_telemetry_down_s, notices_stuck_s=settings.fault_notices_stuck_s,
                broker_down_s=settings.fault_broker_down_s, receiver_restarts=settings.fault_receiver_restarts,
                dead_letters_per_min=settings.fault_dead_letters_per_min, clock_skew_s=settings.fault_clock_skew_s),
            ingest_subscribed=self._ingest_ready,
            receiver_restarts=lambda: self.consumer.receiver_restarts if self.consumer else 0,
            notify_faults=(svc.notifier.faults if svc.notifier is not None and settings.notify_enabled
                           else lambda _now: []),
            broker_access=lambda: svc.broker_access.condition,
            roles_unheld=self._roles_unheld,
        )
        self.system_faults = SystemFaults(settings.street)
        self._workers_started = False  # the drainer's and dispatcher's threads (a start refused before them: none)

    async def start(self) -> None:
        s, svc = self.settings, self.services
        # One process per data directory (its spool, its embedded database): a second is refused, clearly.
        self._instance_lock = InstanceLock([s.data_dir])
        if self._owns_process:
            sys.setswitchinterval(SWITCH_INTERVAL_S)
        if s.mode is Mode.PRODUCTION:  # before anything listens: an open broker is a reason not to start
            await asyncio.to_thread(refuse_open_broker, *s.mqtt_host_port)
        if s.uses_embedded_broker:
            self.broker = EmbeddedBroker(s.embedded_broker_host, s.embedded_broker_port)
            await self.broker.start()
        elif svc.broker_access.manages_broker:
            # The broker's files follow the registry from the start: the writer thread applies the first
            # generation (ingest's own accounts included) and confirms it; ingest's connect retries meanwhile.
            svc.broker_access.start()
            if not await asyncio.get_running_loop().run_in_executor(None, svc.broker_access.sync, 10.0):
                log.error("broker access: the broker has not confirmed the first generation; carrying on")
        svc.feed.bind(asyncio.get_running_loop())
        svc.bus.start()
        svc.drainer.start()
        svc.dispatcher.start()
        if svc.notifier is not None and s.notify_enabled:
            svc.notifier.start()
        self.lifecycle.job.start()
        self._workers_started = True
        self._ticker = threading.Thread(target=self._tick_alerts, name="alert-ticker", daemon=True)
        self._ticker.start()
        self._pruner = threading.Thread(target=self._prune_dead_letters, name="dead-letter-pruner", daemon=True)
        self._pruner.start()
        self.keeper.start()  # the roles this instance takes now start in the keeper's transition thread
        ctx = AppContext(svc.alerts, svc.incidents, svc.registry, svc.dead_letters, svc.feed, self.snapshot,
                         svc.broker_access, ingest_ready=self._ingest_ready, clock_ms=self._clock_ms, settings=s,
                         engine=svc.engine, telemetry=svc.telemetry, faults=lambda: self.health.faults,
                         notifier=svc.notifier if s.notify_enabled else None, history=self.lifecycle.history,
                         roles=self.roles, policy_desk=svc.policy_desk)
        app = create_app(ctx)
        app.state.service_clock = self.clock  # a tester's clock can be stepped through the API (None: the wall clock)
        config = uvicorn.Config(app, host=s.http_host, port=s.http_port, log_level="warning",
                                lifespan="off", timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._tasks.append(asyncio.create_task(self._server.serve(), name="http"))
        while not self._server.started:
            if self._tasks[0].done():
                self._tasks[0].result()  # raises why the server could not start
            await asyncio.sleep(0.02)
        bound_port = self._server.servers[0].sockets[0].getsockname()[1]
        self.http_url = f"http://{s.http_host}:{bound_port}"
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.keeper.first_round.wait, 30)
        if not self.shared and self.ingest_role in self.keeper.roles:  # one machine: a lease left by an instance
            lapsed = time.monotonic() + s.lease_ttl_s + 2  # that died (under another name) lapses within the TTL
            while not self.keeper.holds(self.ingest_role) and time.monotonic() < lapsed:
                await asyncio.sleep(0.05)
        deadline = time.monotonic() + 30
        while self.keeper.holds(self.ingest_role) and not self._ingest_ready() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # the ingest role's consumer starting and subscribing
        if s.simulate_building and s.mode is Mode.PRODUCTION:
            # It registers and publishes as 香泉1号楼's real ids: on a live street that is what a drill must never do
            # (devices/drill.py); drills there run as DRILL-… twins (wanli simulate, the tester page).
            log.warning("production mode: the simulated building is not started (WANLI_SIMULATE_BUILDING ignored)")
        elif s.simulate_building:
            self._start_simulated_building(*s.mqtt_host_port)

    # -- the roles (foundation/leases.py) ---------------------------------------------------------

    def _ingest_ready(self) -> bool:
        """Ingest subscribed where this instance holds the role; an instance standing by is ready to serve."""
        if not self.keeper.holds(self.ingest_role):
            return True
        consumer = self.consumer
        return consumer is not None and consumer.subscribed.is_set()

    def _gain_role(self, role: str, token: int) -> None:
        """This instance took a role (the keeper's transition thread). Ingest: read what the last holder left
        (devices' sequence state, active incidents, the rules' checkpoints), then take the MQTT sessions."""
        if role != self.ingest_role:
            if role == ESCALATION and self.shared:  # the deadlines as the last holder left them
                self.services.alerts.refresh(None)
            if role == DISPATCH:
                notifier = self.services.notifier
                while notifier is not None and self.shared and self.keeper.holds(DISPATCH):
                    try:
                        notifier.recover(self._clock_ms())
                        break
                    except Exception:  # the database is away: again in a second, while the role is held here
                        log.exception("notifier could not settle the attempts left sending; again in 1 s")
                        time.sleep(1.0)
                self._notifier_ready.set()
                self.services.dispatcher.wake()
                if notifier is not None:
                    notifier.wake()
            return
        s, svc = self.settings, self.services
        with self._role_lock:
            if self.consumer is not None:
                return
            if self.shared:  # another instance held it: its committed state is the truth now (registrations are
                svc.registry.reload_states()  # kept in step all along by the change bus)
                svc.alerts.refresh(None)
                svc.alerts.restore_rules(self._clock_ms())
                svc.pipeline.fences = [self.keeper.fence(self.ingest_role)]
            host, port = s.mqtt_host_port
            consumer = MqttConsumer(
                svc.pipeline, host, port, s.ingest_topic_filters, share_group=s.ingest_share_group,
                client_id=s.mqtt_client_id, username=s.mqtt_login(),
                alarm_lane_username=s.mqtt_login(ALARM_LANE_SUFFIX), password=s.mqtt_password,
                batch_size=s.ingest_batch_size, batch_wait_s=s.ingest_batch_wait_ms / 1000,
                queue_size=s.ingest_queue_size, alarm_lane=s.ingest_alarm_lane, clock_ms=self._clock_ms,
                lease_remaining=(lambda: self.keeper.remaining_s(self.ingest_role)) if self.shared else None,
                main_receiver=s.ingest_receiver,
            )
            consumer.start()
            self.consumer = consumer
        log.warning("instance %s: ingest started (token %d)", self.instance, token)

    def _lose_role(self, role: str, token: int) -> None:
        """This instance lost a role, or stops: its work stops here (the receivers have already left the
        sessions if it froze; what they held unacknowledged the broker gives the next holder)."""
        if role == DISPATCH:
            self._notifier_ready.clear()
            self.services.dispatcher.disconnect()  # a round in progress stops at its next notice (its gate)
        if role != self.ingest_role:
            return
        with self._role_lock:
            consumer, self.consumer = self.consumer, None
            if consumer is not None:
                consumer.stop()
            if self._stopping:  # a clean stop, the role still held: the rules' windows as they are now, so that
                try:  # whoever takes ingest next (or this one restarted) resumes them (alerts/service.py)
                    self.services.alerts.checkpoint(self._clock_ms())
                except Exception:  # the database is away: the last periodic checkpoint (at most 10 s old) stands
                    log.exception("could not save the rules' state on stop")
        log.warning("instance %s: ingest stopped (token %d)", self.instance, token)

    def _roles_unheld(self) -> list[tuple[str, float]]:
        """Roles whose lease lapsed longer than WANLI_FAULT_ROLE_UNHELD_S ago (or never held), by the keeper's
        last look at the table."""
        if not self.shared or not self.keeper.seen_now_ms:
            return []
        now, grace = self.keeper.seen_now_ms, self.settings.fault_role_unheld_s * 1000
        rows = {r.role: r for r in self.keeper.seen}
        out = []
        for role in dict.fromkeys([self.ingest_role, ESCALATION, DISPATCH, *(r for r in rows if r.startswith(INGEST))]):
            row = rows.get(role)
            if row is None or now - row.expires_ms > grace:
                out.append((role, (now - row.expires_ms) / 1000 if row else grace / 1000))
        return out

    def roles(self) -> dict[str, object]:
        """This instance, the roles it holds and may take, and every lease as last read (the API, /metrics)."""
        k = self.keeper
        return {"instance": self.instance, "held": k.held(), "may_take": list(k.roles),
                "leases": [{"role": r.role, "holder": r.holder, "token": r.token,
                            "expires_in_s": round((r.expires_ms - k.seen_now_ms) / 1000, 1),
                            "held_for_s": round((k.seen_now_ms - r.acquired_ms) / 1000, 1)} for r in k.seen]}

    def _tick_alerts(self) -> None:
        """Rules look at the time and escalations climb, every alert_tick_s, until the service stops."""
        # The heap lives in real time (the wall clock), not in the service's.
        heap = HeapKeeper(wall_ms()) if self._owns_process else None
        try:
            while not self._stop_ticker.wait(self.settings.alert_tick_s):
                now_ms = self._clock_ms()
                k = self.keeper
                # the rules' clock where ingest is, the escalations' where the escalation role is (foundation/leases.py)
                rules = (k.fence(self.ingest_role) if self.shared else True) if k.holds(self.ingest_role) else False
                escalate = (k.fence(ESCALATION) if self.shared else True) if k.holds(ESCALATION) else False
                if rules or escalate:
                    try:
                        self.services.alerts.tick(now_ms, rules=rules, escalate=escalate)
                        self.health.tick_ok()
                    except StaleIncident as exc:  # another instance's write came first: read again, next tick
                        log.info("alert tick: %s; again on the fresh rows", exc)
                    except Fenced as exc:  # the role just left this instance: its keeper stops the work
                        log.warning("alert tick: %s", exc)
                    except Exception as exc:  # the database is away, a rule failed: try again next tick
                        log.exception("alert tick failed")
                        self.health.tick_failed(f"{type(exc).__name__}: {exc}"[:300], now_ms)
                if escalate:  # the service's faults raised as incidents where the escalation role is held
                    self._check_health(now_ms, escalate if callable(escalate) else None)
                else:  # elsewhere looked at all the same: this instance's /readyz tells (a role nobody holds)
                    try:
                        self.health.check(now_ms)
                    except Exception:
                        log.exception("system health check failed")
                if heap is not None:
                    heap.tick(wall_ms())
        finally:
            if heap is not None:
                heap.close()

    DEAD_LETTER_PRUNE_EVERY_S = 60.0

    def _prune_dead_letters(self) -> None:
        """Keep the dead-letter store within its size and age (a few hundred rows a transaction, off the ticker)."""
        bounds = self.settings.dead_letter_bounds()
        while not self._stop_ticker.wait(self.DEAD_LETTER_PRUNE_EVERY_S):
            try:
                pruned = self.services.dead_letters.prune(self._clock_ms(), bounds)
                if pruned.rows:
                    log.info("dead letters pruned rows=%d bytes=%d", pruned.rows, pruned.bytes)
            except Exception:  # the database is away: next time
                log.exception("dead-letter pruning failed")

    def _check_health(self, now_ms: int, fence: Callable[[Connection], None] | None = None) -> None:
        """The service's own faults become system incidents, and close when they clear (alerts/system_faults.py).
        With several instances, the escalation role's holder does this (``fence``: its check)."""
        try:
            faults = self.health.check(now_ms)
            signals, present = self.system_faults.observe(faults, now_ms)
            for signal in signals:
                log.error("system fault condition=%s: %s", signal.condition, signal.detail)
            self.services.alerts.system_tick(signals, present, now_ms, fence)
        except Exception:  # the database is away: /readyz still tells (health.faults)
            log.exception("system health tick failed")

    def snapshot(self, last: int | None = None, latency: bool = True) -> dict[str, object]:
        """Counters, spool and latency figures for /api/stats, /metrics and the benchmarks.

        ``last``: latency percentiles over only the last N messages (a benchmark's own run).
        """
        svc = self.services
        c, spool = svc.pipeline.counters, svc.spool.state()
        now = self._clock_ms()
        return {
            "received": c.received, "readings": c.readings, "batches": c.batches, "by_kind": dict(c.by_kind),
            "first_received_ms": c.first_received_ms,
            "rejected": dict(c.rejected), "duplicates": c.duplicates, "seq_resets": c.seq_resets,
            "incidents_changed": c.incidents_changed, "spooled_points": c.spooled_points,
            "drained_points": svc.spool.drained_points, "spool_points": spool.points,
            "spool_age_s": (now - spool.oldest_ms) / 1000 if spool.oldest_ms else 0.0,
            "spool_fill": self._spool_fill(spool.fill),
            "store_up": int(svc.drainer.store_up), "store_failures": svc.drainer.store_failures,
            "store_error": svc.drainer.last_error, "backlog": self.consumer.backlog if self.consumer else 0,
            "receiver_restarts": self.consumer.receiver_restarts if self.consumer else 0,
            "telemetry_held": c.telemetry_held, "telemetry_dropped_points": c.telemetry_dropped_points,
            "dead_letters_unstored": c.dead_letters_unstored, "flagged": c.flagged, "flags": dict(c.flags),
            "seq_jumps": c.seq_jumps, "spool_refusal": svc.pipeline.spool_refusal,
            "disks": [{"path": d.path, "fill": d.fill, "free_bytes": d.free_bytes, "reserve_bytes": d.reserve_bytes,
                       "bulk_allowed": d.bulk_allowed} for d in svc.disk_guard.states()],
            "faults": [{"condition": f.condition, "device_id": f.device_id, "impairs_alarms": f.impairs_alarms,
                        "detail": f.detail} for f in self.health.faults],
            "roles": self.roles(),
            "disk_bytes_per_day": dict(self.lifecycle.growth.latest),
            "latency": {"publish_to_committed": svc.pipeline.publish_to_committed.percentiles(last=last),
                        "publish_to_stored": svc.drainer.publish_to_stored.percentiles(last=last)} if latency else {},
        }

    def _spool_fill(self, points_fill: float) -> float:
        """How near the spool is to refusing, 0..1: by its bound, or by its disk's room above the alarm reserve,
        whichever is nearer (a spool on a full disk is full however few points it holds)."""
        disk = self.services.disk_guard.fill_of(self.settings.data_dir)
        return max(points_fill, disk.fill_before_reserve if disk is not None else 0.0)

    def _start_simulated_building(self, host: str, port: int) -> None:
        s, svc = self.settings, self.services
        building = svc.hierarchy.building("xq-01")
        sim = BuildingSimulation(building, street=s.street)
        svc.registry.register_many(sim.records(), actor="simulator", now_ms=self._clock_ms())
        self._tasks.append(asyncio.create_task(
            run_building(sim, host, port, heartbeat_s=s.simulate_heartbeat_seconds,
                         alarm_every_s=s.simulate_alarm_every_seconds, stop=self._stop_sim, clock_ms=self._clock_ms),
            name="simulated-building"))

    async def stop(self) -> None:
        self._stop_sim.set()
        self.services.feed.close()  # open screens' streams end now; browsers reconnect to whoever serves next
        if self._server is not None:
            self._server.should_exit = True
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # every role lost here (the consumer stops, the rules are checkpointed) and given up at once: another
        # instance takes them now
        self._stopping = True
        await asyncio.get_running_loop().run_in_executor(None, self.keeper.stop)
        if self.broker is not None:
            await self.broker.stop()
        self._stop_ticker.set()
        if self._ticker is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._ticker.join, 10)
        if self._pruner is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._pruner.join, 10)
        await asyncio.get_running_loop().run_in_executor(None, self.services.broker_access.stop)
        if self._workers_started:
            await asyncio.get_running_loop().run_in_executor(None, self.services.dispatcher.stop)
            if self.services.notifier is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.services.notifier.stop)
            await asyncio.get_running_loop().run_in_executor(None, self.services.drainer.stop)
        await asyncio.get_running_loop().run_in_executor(None, self.lifecycle.close)
        await asyncio.get_running_loop().run_in_executor(None, self.services.bus.stop)
        self.services.spool.close()
        self.services.telemetry.close()
        self.services.engine.dispose()
        if self._instance_lock is not None:
            self._instance_lock.release()


@contextlib.contextmanager
def running_in_thread(settings: Settings, clock_ms: ClockMs = wall_ms,
                      start_timeout_s: float = 60.0, owns_process: bool = False) -> Iterator[WanliService]:
    """Run the whole service on an event loop in a background thread (for tests, drills and benchmarks)."""
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def main() -> None:
        stop = asyncio.Event()
        holder["stop"], holder["loop"] = stop, asyncio.get_running_loop()
        service = WanliService(settings, clock_ms, owns_process=owns_process)
        try:
            await service.start()
            holder["service"] = service
        except BaseException as exc:
            holder["error"] = exc
            ready.set()
            await service.stop()
            return
        ready.set()
        await stop.wait()
        await service.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="wanli-service", daemon=True)
    thread.start()
    if not ready.wait(start_timeout_s):
        raise TimeoutError("the service did not start in time")
    if "error" in holder:
        thread.join(10)
        raise RuntimeError("the service failed to start") from holder["error"]  # type: ignore[misc]
    try:
        yield holder["service"]  # type: ignore[misc]
    finally:
        loop: asyncio.AbstractEventLoop = holder["loop"]  # type: ignore[assignment]
        loop.call_soon_threadsafe(holder["stop"].set)  # type: ignore[attr-defined]
        thread.join(30)
