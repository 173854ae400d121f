"""``wanli bench access``: device credentials at the street's size, today's per-device files beside the managed way.

Both sides run a real Mosquitto 2.0 (config/mosquitto/auth.conf) holding credentials for the
whole street (``--devices``, default every device of ``generate_street()``: 50,615):

- **per-device files** (the baseline, before issue 21): devices log in as their id, the ACL
  has one ``user`` block per device, every change rewrites both files and sends SIGHUP at
  once, with no coalescing and no confirmation;
- **managed, password file only** (``devices/broker_access.py`` with
  ``WANLI_BROKER_DYNAMIC_SECURITY=false``, issue 21's first round): devices log in as
  ``street/kind/id``, the ACL is two ``%u`` patterns, one writer thread coalesces changes into
  one password file + one SIGHUP and confirms each generation with its canary login;
- **managed with the dynamic-security plugin** (the default): the same writer sends a change to
  a few devices to the broker's plugin instead (no reload, confirmed by the plugin's answers),
  and folds the plugin's clients back into the password file past a limit. Its side also
  measures a fold of ``--fold-clients`` clients (one reload, then the plugin's clients deleted).

Figures, per side:

1. *credentials → first connect*, p50 / p99 / max over ``--changes`` changes (one in three
   in a burst of 5 at once): from the call that issues them until the device's login is
   accepted (retried every 20 ms; a change still refused after ``--give-up-s`` counts as lost);
2. *longest stall*: the longest gap between consecutive messages of a 50 Hz QoS 1 stream
   (one device publishing, the ingest account receiving) while the changes are made;
3. *bulk credentials for the whole street*: managed: ``issue_many`` for every device until
   the broker confirms and 20 random devices log in; baseline: there is no bulk path, so
   the figure is the device count times the mean per-change time measured in (1);
4. *broker start*: a new Mosquitto on the full files until the ingest account's login is
   accepted.

Then the per-device API: ``POST /api/devices/{id}/credentials`` from ``--api-callers``
threads at once against a running service (``wanli run``'s wiring, the street registered
and credentialed), credentials per second.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import random
import secrets
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.broker_access import BrokerAccess, MqttCanaryLogin
from devices.broker_dynsec import DynamicSecurity
from devices.credentials import (
    INGEST_ACCOUNT,
    BrokerAuthFiles,
    CredentialStore,
    DeviceTopicOwner,
    mosquitto_password_hash,
    render_broker_auth,
    render_password_file,
)
from devices.hierarchy import load_hierarchy
from devices.registry import DeviceRecord, DeviceRegistry
from foundation import db
from tooling.bench import proc_ticks
from tooling.local_servers import MosquittoServer, free_port, secured_mosquitto
from tooling.street_files import street_on_disk
from foundation.mqtt import Client, new_client
from foundation.service_clock import wall_ms

STREAM_HZ = 50
# The niceness given to the brokers and the stream's processes (``--nice``): on this shared two-core machine the
# bench, the test suites of other sessions and the service all want the cores, and a broker descheduled for 200 ms
# shows as a 200 ms stall that is the scheduler's, not the broker's. A production broker has its cores to itself.
NICE = 0


def _prioritise(pid: int = 0) -> None:
    if NICE:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, NICE)
        except PermissionError:  # not root: measured at the normal priority (the table's header says which)
            pass


# -- the two ways ---------------------------------------------------------------------------------------------------


def legacy_files(owners: Sequence[DeviceTopicOwner], hashes: dict[str, str], ingest_password: str) -> tuple[str, str]:
    """The password and ACL files as the service wrote them before issue 21: login = device id, a block per device."""
    admitted = [o for o in owners if o.device_id in hashes]
    passwords = {o.device_id: hashes[o.device_id] for o in admitted}
    passwords[INGEST_ACCOUNT.username] = mosquitto_password_hash(ingest_password)
    blocks = ["# per-device files (before issue 21)\n",
              f"user {INGEST_ACCOUNT.username}\ntopic read safety/#\ntopic write dispatch/#\n"]
    for o in sorted(admitted, key=lambda o: o.device_id):
        rules = "".join(f"topic read {f}\n" for f in o.read_filters) + f"topic write {o.publish_filter}\n"
        blocks.append(f"user {o.device_id}\n{rules}")
    return render_password_file(passwords), "\n".join(blocks)


class Side:
    """One way of managing access on one broker: ``change(ids)`` issues and returns {id: (login, password)}."""

    name = ""

    def __init__(self, workdir: Path, records: list[DeviceRecord]) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.engine = db.make_engine(f"sqlite:///{workdir / 'bench.db'}")
        db.METADATA.create_all(self.engine)
        self.store = CredentialStore(self.engine)
        self.records = records
        self.owners = {r.device_id: DeviceTopicOwner(r.street_id, r.kind, r.device_id) for r in records}
        self.files = BrokerAuthFiles(workdir / "auth")
        self.files.directory.mkdir(exist_ok=True)
        self.ingest_password = secrets.token_urlsafe(24)
        self.broker: MosquittoServer | None = None
        self.port = 0

    def login_of(self, device_id: str) -> str:
        raise NotImplementedError

    def start_broker(self) -> float:
        """Start a new broker on the current files; seconds until the ingest account's login is accepted."""
        self.broker = MosquittoServer(self.workdir / f"broker-{time.time_ns()}", port=self.port or free_port(),
                                      password_file=self.files.password_path, acl_file=self.files.acl_path)
        started = time.monotonic()
        self.broker.start(timeout=900)  # per-device files at the street's size: minutes on a loaded machine
        assert self.broker.pid is not None
        _prioritise(self.broker.pid)
        self.port = self.broker.port
        canary = MqttCanaryLogin(self.broker.host, self.broker.port)
        while not canary.try_login(INGEST_ACCOUNT.username, self.ingest_password, 1.0):
            if time.monotonic() - started > 300:
                raise RuntimeError(f"{self.name}: the broker admitted nobody within 300 s")
            time.sleep(0.01)
        return time.monotonic() - started

    def stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def change(self, device_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        raise NotImplementedError

    def close(self) -> None:
        self.stop_broker()
        self.engine.dispose()


class PerDeviceFiles(Side):
    name = "per-device files (before)"

    def __init__(self, workdir: Path, records: list[DeviceRecord]) -> None:
        super().__init__(workdir, records)
        self._lock = threading.Lock()

    def login_of(self, device_id: str) -> str:
        return device_id

    def write_all(self) -> None:
        self.files.write(*legacy_files(list(self.owners.values()), self.store.active_hashes(), self.ingest_password))

    def change(self, device_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        issued = {d: (d, self.store.issue(d, wall_ms())) for d in device_ids}
        with self._lock:  # BrokerAccess.sync held a lock around render + write + SIGHUP, one change at a time
            self.write_all()
            assert self.broker is not None and self.broker.pid is not None
            os.kill(self.broker.pid, 1)  # SIGHUP
        return issued


class Managed(Side):
    name = "managed + dynamic-security plugin (after)"

    def __init__(self, workdir: Path, records: list[DeviceRecord], street_file: Path, *,
                 dynamic_security: bool = True) -> None:
        super().__init__(workdir, records)
        self.dynamic_security = dynamic_security
        self.fold_limit = 0  # the plugin's limit (0: the settings' default)
        if not dynamic_security:
            self.name = "managed, password file only (before)"
        self.registry = DeviceRegistry(self.engine, load_hierarchy(street_file))
        self.registry.register_many(records, "bench", wall_ms())
        self.pid_file = workdir / "mosquitto.pid"
        self.access: BrokerAccess | None = None
        self.admin_password = secrets.token_urlsafe(24)  # the same for every writer of this side, as for a service

    def login_of(self, device_id: str) -> str:
        return self.owners[device_id].username

    def write_all(self) -> None:
        self.files.write(*render_broker_auth(list(self.owners.values()), self.store.active_hashes(),
                                             {INGEST_ACCOUNT: self.ingest_password}))

    def start_access(self) -> None:
        assert self.broker is not None
        self.pid_file.write_text(str(self.broker.pid))
        from wanli.settings import Settings

        defaults = Settings()
        overlay = DynamicSecurity(self.broker.host, self.broker.port, self.admin_password) \
            if self.dynamic_security else None
        self.access = BrokerAccess(self.registry, self.store, wall_ms, files=self.files, pid_file=self.pid_file,
                                   service_accounts={INGEST_ACCOUNT: self.ingest_password},
                                   canary=MqttCanaryLogin(self.broker.host, self.broker.port), overlay=overlay,
                                   overlay_limit=self.fold_limit or defaults.broker_dynamic_security_limit,
                                   overlay_batch_max=defaults.broker_dynamic_security_batch)
        self.access.start()
        if not self.access.sync(60):
            raise RuntimeError("the managed broker did not confirm its first generation")
        deadline = time.monotonic() + 30
        while overlay is not None and not self.access.fast_lane_ready:
            if time.monotonic() > deadline:
                raise RuntimeError("the broker's dynamic-security plugin did not answer")
            time.sleep(0.05)

    def change(self, device_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        assert self.access is not None
        return {i.device_id: (i.username, i.password) for i in self.access.issue_many(device_ids)}

    def close(self) -> None:
        if self.access is not None:
            self.access.stop()
        super().close()


# -- measuring ------------------------------------------------------------------------------------------------------


class Stream:
    """A device publishing QoS 1 at 50 Hz and the ingest account receiving, in a process of its own (so the bench's
    own Python work cannot pause it): the longest gap between arrivals is the broker's longest stall."""

    def __init__(self, host: str, port: int, login: str, password: str, topic: str, ingest_password: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._ready, self._stop, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(target=_stream, name="bench-access-stream", daemon=True,
                                 args=(host, port, login, password, topic, ingest_password, self._ready, self._stop,
                                       self._out, NICE))

    def start(self) -> None:
        self._proc.start()
        if not self._ready.wait(60):
            raise RuntimeError("the 50 Hz stream did not start")

    def stop(self) -> tuple[float, float]:
        """Longest gap between arrivals and longest delay of one message (sent → received), in ms.

        A gap also counts the machine's pauses of the stream's own process (nothing is sent meanwhile); a delay
        only what held a message up after it was sent: the broker's stall (and the receiving thread's pauses)."""
        self._stop.set()
        gap_ms, delay_ms = self._out.get(timeout=60)
        self._proc.join(10)
        return float(gap_ms), float(delay_ms)


def _stream(host: str, port: int, login: str, password: str, topic: str, ingest_password: str,
            ready: Any, stop: Any, out: Any, nice: int = 0) -> None:
    global NICE
    NICE = nice
    _prioritise()
    arrivals: list[float] = []
    delays: list[float] = []

    def arrived(message: Any) -> None:
        now = time.monotonic()
        arrivals.append(now)
        delays.append(now - float(message.payload.split(b'"t":', 1)[1].rstrip(b"}")))

    def client(name: str, secret: str) -> Client:
        return new_client(name, username=name, password=secret)

    sub = client(INGEST_ACCOUNT.username, ingest_password)
    sub.on_message = lambda _c, _u, m: arrived(m)
    sub.connect(host, port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    pub = client(login, password)
    pub.connect(host, port)
    pub.loop_start()
    time.sleep(0.5)  # subscribed
    ready.set()
    period, n, t0 = 1 / STREAM_HZ, 0, time.monotonic()
    while not stop.is_set():
        pub.publish(topic, b'{"v":1,"type":"heartbeat","t":%.6f}' % time.monotonic(), qos=1)
        n += 1
        stop.wait(max(0.0, t0 + n * period - time.monotonic()))
    time.sleep(0.5)
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    out.put((max(gaps, default=float("inf")) * 1000, max(delays, default=float("inf")) * 1000))


def _first_connect(host: str, port: int, login: str, password: str, since: float, give_up_s: float) -> float | None:
    canary = MqttCanaryLogin(host, port)
    while time.monotonic() - since < give_up_s:
        if canary.try_login(login, password, 1.0):
            return time.monotonic() - since
        time.sleep(0.02)
    return None


@dataclass
class SideResult:
    name: str
    devices: int
    connect_s: list[float] = field(default_factory=list)
    lost: int = 0
    stall_ms: float = 0.0
    bulk_s: float = 0.0
    bulk_note: str = ""
    start_s: float = 0.0
    change_s: list[float] = field(default_factory=list)  # how long each change call took
    quiet_ms: float = 0.0  # the same stream's longest gap with no change at all: the machine's own jitter
    reloads: int = 0  # reloads the broker logged during the changes
    reload_cpu_ms: float = 0.0  # the broker's CPU time per reload, measured alone
    connected: int = 0  # devices connected (idle) while it was measured
    bulk_stall_ms: float = 0.0  # the stream's longest gap during the bulk credentials
    change_cpu_ms: float = 0.0  # the broker's CPU per change, changes one at a time with nothing else going on
    change_cpu_n: int = 0
    fold_clients: int = 0  # the plugin's clients folded into the file (0: no plugin on this side)
    fold_s: float = 0.0
    fold_stall_ms: float = 0.0
    # the longest delay of one stream message (sent → received) in the same windows: the broker's stalls without
    # the stream process's own pauses (those show in the gaps above)
    stall_delay_ms: float = 0.0
    quiet_delay_ms: float = 0.0
    bulk_delay_ms: float = 0.0
    fold_delay_ms: float = 0.0
    restart_s: float = 0.0  # the service started again on the same broker: until its first generation is confirmed
    restart_reloads: int = -1

    def pct(self, p: float) -> float:
        if not self.connect_s:
            return float("nan")
        s = sorted(self.connect_s)
        return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def _changes(side: Side, ids: list[str], give_up_s: float, result: SideResult) -> None:
    """``len(ids)`` changes: singles, and one in three in a burst of 5 at once; each timed to its first connect."""
    assert side.broker is not None
    host, port = side.broker.host, side.broker.port

    def one(device_id: str, barrier: threading.Barrier | None) -> None:
        if barrier is not None:
            barrier.wait()
        t0 = time.monotonic()
        login, password = side.change([device_id])[device_id]
        result.change_s.append(time.monotonic() - t0)
        took = _first_connect(host, port, login, password, t0, give_up_s)
        if took is None:
            result.lost += 1
        else:
            result.connect_s.append(took)

    i = 0
    burst = max(1, len(ids) // 3)
    with ThreadPoolExecutor(5) as pool:
        while i < len(ids):
            if i < burst:
                group = ids[i:i + 5]
                barrier = threading.Barrier(len(group))
                list(pool.map(lambda d, b=barrier: one(d, b), group))
                i += len(group)
            else:
                one(ids[i], None)
                i += 1
            time.sleep(0.2)


def _change_cpu_ms(side: Managed, device_ids: list[str]) -> float:
    """The broker's CPU time (user + system) per change, one change at a time, each confirmed before the next: what
    a change costs the broker whatever the machine's load (the stall on a free core is about this long)."""
    assert side.access is not None and side.broker is not None and side.broker.pid is not None
    stat = Path(f"/proc/{side.broker.pid}/stat")

    def cpu() -> int:
        return proc_ticks(stat)  # utime + stime

    time.sleep(0.5)
    before = cpu()
    for device_id in device_ids:
        requested_before, _ = side.access.generations()
        side.change([device_id])
        if not side.access.wait_confirmed(requested_before + 1, 60):
            raise RuntimeError(f"{side.name}: a change was not confirmed within 60 s")
    return (cpu() - before) * 1000 / os.sysconf("SC_CLK_TCK") / len(device_ids)


def _fold(side: Managed, stream: Callable[[], Stream], spare: list[str], clients: int, result: SideResult,
          rng: random.Random) -> None:
    """Devices changed through the plugin (in generations it takes) until it holds ``clients`` (its limit), then one
    change more while the stream runs: that change goes through the file (one reload) and the plugin's clients are
    all deleted (the fold). Timed until the plugin is empty, with the stream's longest gap."""
    assert side.access is not None and side.broker is not None
    batch = 100
    picked = rng.sample(spare, min(clients + 1, len(spare)))
    reloads = side.broker.reloads_logged()
    k = 0
    while side.access.fast_lane_clients < clients and k < len(picked) - 1:
        want = min(batch, clients - side.access.fast_lane_clients, len(picked) - 1 - k)
        requested_before, _ = side.access.generations()
        side.change(picked[k:k + want])
        side.access.wait_confirmed(requested_before + 1, 60)
        k += want
    if side.broker.reloads_logged() != reloads:
        print("    (the changes before the fold reloaded the broker)", flush=True)
    held = side.access.fast_lane_clients
    folding = stream()
    folding.start()
    t0 = time.monotonic()
    side.change(picked[-1:])  # one past the limit
    deadline = time.monotonic() + 300
    while side.access.fast_lane_clients or not side.access.fast_lane_ready:  # the plugin's clients deleted
        if time.monotonic() > deadline:
            raise RuntimeError("the plugin's clients were not deleted after the fold")
        time.sleep(0.01)
    result.fold_s = time.monotonic() - t0
    result.fold_clients = held
    time.sleep(0.5)
    result.fold_stall_ms, result.fold_delay_ms = folding.stop()


def run_side(side: Side, changes: int, give_up_s: float, rng: random.Random, connected: int = 0,
             fold_clients: int = 0) -> SideResult:
    ids = [r.device_id for r in side.records]
    result = SideResult(side.name, len(ids))
    first = side.store.issue_many(ids, wall_ms())  # the street already credentialed
    side.write_all()  # type: ignore[attr-defined]
    result.start_s = side.start_broker()
    if isinstance(side, Managed):
        side.start_access()
    assert side.broker is not None
    streamer, *changed = rng.sample(ids, changes + 1)
    # the stream's device keeps the credentials the street started with (in the password file): no change, fold or
    # bulk below touches its login, so its stream's gaps are the broker's, not its own reconnections
    s_login, s_password = side.login_of(streamer), first[streamer]
    if _first_connect(side.broker.host, side.broker.port, s_login, s_password, time.monotonic(), 600) is None:
        raise RuntimeError(f"{side.name}: the streaming device was never admitted")
    owner = side.owners[streamer]

    def stream() -> Stream:
        assert side.broker is not None
        return Stream(side.broker.host, side.broker.port, s_login, s_password,
                      f"{owner.publish_filter[:-1]}telemetry", side.ingest_password)

    quiet = stream()
    quiet.start()
    time.sleep(5.0)
    result.quiet_ms, result.quiet_delay_ms = quiet.stop()
    during = stream()
    during.start()
    time.sleep(1.0)
    reloads = side.broker.reloads_logged()
    _changes(side, changed, give_up_s, result)
    time.sleep(0.5)
    result.reloads = side.broker.reloads_logged() - reloads
    result.stall_ms, result.stall_delay_ms = during.stop()
    untouched = [d for d in ids if d != streamer and d not in set(changed)]
    idle = _connect_idle(side, [(side.login_of(d), first[d]) for d in rng.sample(untouched, min(connected,
                                                                                                len(untouched)))])
    try:
        result.connected = len(idle)
        result.reload_cpu_ms = _reload_cpu_ms(side, 3)
    finally:
        for sock in idle:
            sock.close()

    spare = [d for d in ids if d != streamer and d not in set(changed)]
    rng.shuffle(spare)
    if isinstance(side, Managed):
        result.change_cpu_n = 100
        result.change_cpu_ms = _change_cpu_ms(side, spare[:result.change_cpu_n])

    if isinstance(side, Managed) and side.dynamic_security:
        from wanli.settings import Settings

        _fold(side, stream, spare[result.change_cpu_n:], side.fold_limit or Settings().broker_dynamic_security_limit,
              result, rng)

    if isinstance(side, Managed):
        bulk_stream = stream()
        bulk_stream.start()
        t0 = time.monotonic()
        issued = side.change([d for d in ids if d != streamer])  # the stream's device keeps its login and connection
        assert side.access is not None
        requested, _ = side.access.generations()
        side.access.wait_confirmed(requested, 300)
        sample = rng.sample(sorted(issued), min(20, len(issued)))
        for d in sample:
            if _first_connect(side.broker.host, side.broker.port, *issued[d], time.monotonic(), 60) is None:
                raise RuntimeError(f"{d} could not connect after the bulk issue")
        result.bulk_s = time.monotonic() - t0
        result.bulk_note = f"issue_many({len(issued):,}), confirmed, 20 random devices logged in"
        result.bulk_stall_ms, result.bulk_delay_ms = bulk_stream.stop()
        result.restart_s, result.restart_reloads = _restart_service(side)
    else:
        per = statistics.mean(result.connect_s) if result.connect_s else float("nan")
        result.bulk_s = per * len(ids)
        result.bulk_note = f"no bulk path: {len(ids):,} × {per:.2f} s per change (extrapolated)"
    return result


def _restart_service(side: Side) -> tuple[float, int]:
    """The service stopped and started again on the same broker and table (nothing changed meanwhile): seconds until
    its first generation is confirmed, and the reloads that took."""
    if not isinstance(side, Managed) or side.access is None or side.broker is None:
        return 0.0, -1
    side.access.stop()
    reloads = side.broker.reloads_logged()
    t0 = time.monotonic()
    side.start_access()
    return time.monotonic() - t0, side.broker.reloads_logged() - reloads


def _connect_packet(login: str, password: str) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session, username and password, keepalive 10 min), for idle connections."""
    def field(text: str) -> bytes:
        raw = text.encode()
        return len(raw).to_bytes(2, "big") + raw

    body = field("MQTT") + bytes([4, 0xC2]) + (600).to_bytes(2, "big") + field(login) + field(login) + field(password)
    size, length = len(body), b""
    while True:
        digit, size = size % 128, size // 128
        length += bytes([digit | (0x80 if size else 0)])
        if not size:
            return b"\x10" + length + body


def _connect_idle(side: Side, logins: list[tuple[str, str]]) -> list[Any]:
    """Devices connected and idle, as the street's are: Mosquitto re-checks each one's password at every reload."""
    import socket

    if not logins:
        return []
    assert side.broker is not None
    socks = []
    for login, password in logins:
        sock = socket.create_connection((side.broker.host, side.broker.port), timeout=60)
        sock.sendall(_connect_packet(login, password))
        socks.append(sock)
    for sock in socks:
        connack = sock.recv(4)
        if len(connack) != 4 or connack[3] != 0:
            raise RuntimeError(f"{side.name}: an idle device was refused ({connack!r})")
    return socks


def _reload_cpu_ms(side: Side, reloads: int) -> float:
    """The broker's CPU time (user + system) per reload, SIGHUP by SIGHUP with nothing else going on: what one reload
    costs whatever the machine's load (on a busy machine the stall is longer than this; on a quiet one, about it)."""
    broker = side.broker
    assert broker is not None and broker.pid is not None
    ticks = os.sysconf("SC_CLK_TCK")
    def answering() -> None:  # the main loop is free again: the reload is over
        # a raw login: with thousands of idle sockets open here, paho's select() cannot take a new one's number
        import socket

        while True:
            with socket.create_connection((broker.host, broker.port), timeout=600) as sock:
                sock.sendall(_connect_packet(INGEST_ACCOUNT.username, side.ingest_password))
                if sock.recv(4)[3:4] == b"\x00":
                    return
            time.sleep(0.05)

    def cpu() -> int:
        assert broker.pid is not None
        fields = Path(f"/proc/{broker.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    time.sleep(1.0)
    answering()
    before = cpu()
    for _ in range(reloads):
        broker.reload(timeout=900)  # returns once the broker logs that it starts reloading
        answering()
    return (cpu() - before) * 1000 / ticks / reloads


def plugin_cost(workdir: Path, sizes: Sequence[int], commands: int = 20) -> list[tuple[int, float, float, float]]:
    """What one change costs the broker when its dynamic-security plugin already holds ``size`` clients.

    The plugin starts from a file holding that many clients (as after that many changes), then ``commands``
    ``modifyClient`` commands go one at a time, each answered before the next. Per size: (clients, broker CPU per
    command in ms, round trip p50 and max in ms). Mosquitto 2.0 rewrites the plugin's whole file after each command,
    so this grows with the clients it holds: it sets the fold's limit (WANLI_BROKER_DYNAMIC_SECURITY_LIMIT)."""
    import base64
    import hashlib
    import json

    from devices.broker_dynsec import EMPTY_CONFIG, modify_client

    rows = []
    for size in sizes:
        here = workdir / f"plugin-{size}"
        files = BrokerAuthFiles(here / "auth")
        files.directory.mkdir(parents=True)
        overlay = DynamicSecurity("127.0.0.1", 0, secrets.token_urlsafe(24))
        account, password = overlay.account()
        files.write(*render_broker_auth([], {}, {INGEST_ACCOUNT: secrets.token_urlsafe(24), account: password}))
        salt = os.urandom(12)
        digest = hashlib.pbkdf2_hmac("sha512", secrets.token_bytes(16), salt, 1, 64)
        logins = [f"wanli/smoke_detector/SD-P{i:06d}" for i in range(max(size, commands))]
        config = dict(EMPTY_CONFIG, clients=[
            {"username": login, "textdescription": "wanli " + "0" * 20, "password": base64.b64encode(digest).decode(),
             "salt": base64.b64encode(salt).decode(), "iterations": 1} for login in logins])
        (files.directory / "dynamic-security.json").write_text(json.dumps(config))
        broker = MosquittoServer(here / "broker", port=free_port(), password_file=files.password_path,
                                 acl_file=files.acl_path)
        broker.start()
        assert broker.pid is not None
        _prioritise(broker.pid)
        try:
            overlay.host, overlay.port = broker.host, broker.port
            if not overlay.connect(timeout_s=30):
                raise RuntimeError("the dynamic-security admin login was refused")
            assert broker.pid is not None
            stat = Path(f"/proc/{broker.pid}/stat")

            def cpu() -> int:
                return sum(int(f) for f in stat.read_text().rsplit(")", 1)[1].split()[11:13])

            time.sleep(0.5)
            before, trips = cpu(), []
            for i in range(commands):
                t0 = time.monotonic()
                overlay.run([modify_client(logins[i], secrets.token_urlsafe(16), "wanli bench")], per_message=1)
                trips.append((time.monotonic() - t0) * 1000)
            per = (cpu() - before) * 1000 / os.sysconf("SC_CLK_TCK") / commands
            rows.append((len(logins), per, statistics.median(trips), max(trips)))
        finally:
            overlay.close()
            broker.stop()
    return rows


# -- the per-device API ---------------------------------------------------------------------------------------------


@dataclass
class ApiResult:
    callers: int
    calls: int
    seconds: float
    errors: int

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


def run_api(workdir: Path, street_file: Path, records: list[DeviceRecord], calls: int, callers: int) -> ApiResult:
    import httpx

    from dashboards.accounts import AccountStore
    from dashboards.auth import Role
    from wanli.runtime import running_in_thread
    from wanli.settings import Settings

    with secured_mosquitto(workdir) as broker:
        settings = Settings(data_dir=workdir / "data", hierarchy_file=street_file, http_port=0, simulate_building=False,
                            **broker.service_settings())
        with running_in_thread(settings, owns_process=True) as service:
            svc = service.services
            svc.registry.register_many(records, actor="bench", now_ms=wall_ms())
            svc.broker_access.issue_many([r.device_id for r in records])  # the street already credentialed
            requested, _ = svc.broker_access.generations()
            svc.broker_access.wait_confirmed(requested, 300)
            _token, raw = AccountStore(svc.engine, settings.auth_secret_key.get_secret_value()).create_token(
                "bench-access", [Role.MAINTAINER], "bench", wall_ms())
            ids = [r.device_id for r in random.Random(1).sample(records, calls)]
            errors = 0
            lock = threading.Lock()

            def caller(chunk: list[str]) -> None:
                nonlocal errors
                with httpx.Client(base_url=service.http_url, headers={"Authorization": f"Bearer {raw}"},
                                  timeout=60) as client:
                    for d in chunk:
                        if client.post(f"/api/devices/{d}/credentials").status_code != 201:
                            with lock:
                                errors += 1

            chunks = [ids[k::callers] for k in range(callers)]
            t0 = time.monotonic()
            with ThreadPoolExecutor(callers) as pool:
                list(pool.map(caller, chunks))
            return ApiResult(callers, calls, time.monotonic() - t0, errors)


# -- the command ----------------------------------------------------------------------------------------------------


def street(devices: int, workdir: Path) -> tuple[Path, list[DeviceRecord]]:
    return street_on_disk(workdir, devices)


def print_table(results: list[SideResult], api: ApiResult | None) -> None:
    print()
    print(f"| figure | target | {' | '.join(r.name for r in results)} |")
    print("|---|---|" + "---|" * len(results))

    def row(figure: str, target: str, cell: Callable[[SideResult], str]) -> None:
        print(f"| {figure} | {target} | {' | '.join(cell(r) for r in results)} |")

    row("devices credentialed", "", lambda r: f"{r.devices:,}")
    row("credentials → first connect, p50 / p99 / max", "≤ 1 s",
        lambda r: f"{r.pct(50):.2f} / {r.pct(99):.2f} / {max(r.connect_s, default=float('nan')):.2f} s"
                  + (f", **{r.lost} of {r.lost + len(r.connect_s)} lost**" if r.lost else ""))
    row("longest stall of a 50 Hz QoS 1 stream during the changes: longest gap / longest delay", "≤ 100 ms",
        lambda r: f"{r.stall_ms:,.0f} / {r.stall_delay_ms:,.0f} ms")
    row("… the same stream with no change (the machine's own jitter)", "",
        lambda r: f"{r.quiet_ms:,.0f} / {r.quiet_delay_ms:,.0f} ms")
    row("broker CPU per reload (SIGHUP alone)", "", lambda r: f"{r.reload_cpu_ms:,.0f} ms with {r.connected:,} devices "
                                                              "connected")
    row("reloads the broker logged for the changes", "", lambda r: f"{r.reloads} for {len(r.connect_s) + r.lost}")
    row("broker CPU per change (one at a time, each confirmed)", "",
        lambda r: f"{r.change_cpu_ms:,.1f} ms ({r.change_cpu_n} changes)" if r.change_cpu_n else "")
    row("bulk credentials, whole street", "≤ 60 s",
        lambda r: (f"{r.bulk_s:,.1f} s" if r.bulk_s < 600 else f"≈ {r.bulk_s / 3600:,.1f} h") + f" ({r.bulk_note})")
    row("… the stream's longest gap / delay during the bulk (one reload)", "",
        lambda r: f"{r.bulk_stall_ms:,.0f} / {r.bulk_delay_ms:,.0f} ms" if r.bulk_stall_ms else "")
    row("fold of the plugin's clients into the file: time / longest gap / longest delay", "",
        lambda r: f"{r.fold_s:.2f} s / {r.fold_stall_ms:,.0f} / {r.fold_delay_ms:,.0f} ms ({r.fold_clients} clients)"
        if r.fold_clients else "")
    row("broker start on the street's files", "", lambda r: f"{r.start_s:.2f} s")
    row("service restart on the same broker: until confirmed / reloads", "",
        lambda r: f"{r.restart_s:.2f} s / {r.restart_reloads}" if r.restart_reloads >= 0 else "")
    if api is not None:
        print(f"\nper-device API, managed: {api.rate:,.1f} credentials/s ({api.calls} calls from {api.callers} callers "
              f"at once in {api.seconds:.1f} s, {api.errors} errors; target ≥ 50/s)")


def main(args: argparse.Namespace) -> int:
    import resource

    # Room for --connected idle devices, here and in the brokers started from here (they inherit it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.connected + 2000
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(hard, wanted),
                                                    hard))
    for noisy in ("devices", "dashboards", "ingest", "alerts", "wanli"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # a line per change would bury the table
    global NICE
    NICE = args.nice
    base = Path(tempfile.mkdtemp(prefix="wanli-bench-access-"))
    try:
        street_file, records = street(args.devices, base)
        print(f"wanli bench access: {len(records):,} devices, {args.changes} changes per side "
              f"(baseline {args.baseline_changes}), load {os.getloadavg()[0]:.2f}, brokers and streams at nice "
              f"{NICE if os.geteuid() == 0 else 0}", flush=True)
        results: list[SideResult] = []
        rng = random.Random(args.seed)
        sides: list[tuple[Callable[[], Side], int]] = [
            (lambda: Managed(base / "managed", records, street_file), args.changes)]
        if not args.skip_file_only:
            sides.append((lambda: Managed(base / "managed-file", records, street_file, dynamic_security=False),
                          args.changes))
        if not args.skip_baseline:
            sides.append((lambda: PerDeviceFiles(base / "per-device", records), args.baseline_changes))
        for make, changes in sides:
            side = make()
            if isinstance(side, Managed):
                side.fold_limit = args.fold_clients
            try:
                print(f"  {side.name} …", flush=True)
                results.append(run_side(side, changes, args.give_up_s, rng, args.connected, args.fold_clients))
                print_table(results[-1:], None)  # at once: the next side may take long
            finally:
                side.close()
        if args.plugin_sizes:
            print("  the plugin's cost per change by the clients it holds …", flush=True)
            print("\n| clients the plugin holds | broker CPU per change | round trip p50 / max |\n|---|---|---|")
            for clients, per, p50, worst in plugin_cost(base / "plugin", args.plugin_sizes):
                print(f"| {clients:,} | {per:.1f} ms | {p50:.1f} / {worst:.1f} ms |", flush=True)
        api = None
        if args.api_calls:
            print("  per-device API …", flush=True)
            api = run_api(base / "api", street_file, records, min(args.api_calls, len(records)), args.api_callers)
        print_table(results, api)
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


def add_commands(bench_subparsers: Any) -> None:
    p = bench_subparsers.add_parser("access", help="device credentials at the street's size: today's per-device "
                                                   "files beside the managed way (docs/benchmarks.md)")
    p.add_argument("--devices", type=int, default=0, help="devices credentialed (default: the whole street, 50,615)")
    p.add_argument("--changes", type=int, default=50, help="credential changes timed on the managed side")
    p.add_argument("--baseline-changes", type=int, default=10,
                   help="changes on the per-device files (each stalls the broker seconds at full size)")
    p.add_argument("--give-up-s", type=float, default=30.0, help="a change still refused after this long is lost")
    p.add_argument("--api-calls", type=int, default=400, help="per-device API calls (0: skip)")
    p.add_argument("--api-callers", type=int, default=8)
    p.add_argument("--connected", type=int, default=5000,
                   help="devices connected (idle) while the broker's CPU per reload is measured")
    p.add_argument("--fold-clients", type=int, default=0,
                   help="clients given to the dynamic-security plugin before it is folded into the file (default: "
                        "its limit, WANLI_BROKER_DYNAMIC_SECURITY_LIMIT; the writer's limit is set to it)")
    p.add_argument("--plugin-sizes", type=int, nargs="*", default=[100, 2000, 5000, 10000, 20000],
                   help="clients the dynamic-security plugin holds when its cost per change is measured (none: skip)")
    p.add_argument("--nice", type=int, default=-5,
                   help="niceness of the brokers and the stream's processes (as root; 0: as everything else): a "
                        "broker with a core of its own, as in production, rather than one queued behind the bench")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--skip-file-only", action="store_true", help="leave out the password-file-only managed side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true")
    p.set_defaults(func=main)
