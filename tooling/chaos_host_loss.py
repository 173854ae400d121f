"""Losing a host: two instances are one service, and the one that ingests dies or freezes mid-storm.

Two ``wanli run`` processes on one PostgreSQL and one Mosquitto, with the same MQTT client id
(one ingest, held by one of them at a time: foundation/leases.py) and a data directory each. Devices
are registered through the first; the second must honour them within a second. A probe alarm
is raised first, and the first fault is timed to fall on its escalation deadline. Then, while a
storm of smoke alarms is published, the ingest holder is

- killed (SIGKILL of its whole process group: a power cut), ``kills`` times, the dead one
  started again each time as the new standby; or
- frozen (SIGSTOP of its process group: a paused VM) for ``freeze_s``, then resumed: it must
  find its roles gone, write nothing and leave the MQTT sessions alone.

Reported: the takeover times (the fault → the other instance subscribed as ingest), alarms
published / with their incident / lost / counted twice, notices sent / sent twice (a listener on
``dispatch/v1/#`` counts each notice's copies) / never sent, how late the probe's escalation
step fired after its deadline, and the session take-overs the broker logged after the last
takeover (two instances fighting over a session would show there).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, create_engine, text

from devices.topics import DISPATCH_ROOT
from devices.kinds.smoke_detector.simulator import SmokeDetectorSim
from tooling.chaos import (
    Devices,
    ServiceProcess,
    account_alarms,
    in_background,
    now_ms,
    publish_paced,
    storm_devices,
    wait_for,
)
from tooling.local_servers import MosquittoServer
from foundation.mqtt import MQTTMessage, Subscriber

TAKEOVER_TARGET_S = 10.0


@dataclass
class HostLossReport:
    fault: str
    takeovers_s: list[float]
    published: int
    opened: int
    lost: int
    doubled: int
    notices_sent: int
    notices_doubled: int
    notices_unsent: int
    registration_seen_s: float
    escalation_late_s: float | None
    session_fights_after: int
    details: dict[str, Any] = field(default_factory=dict)
    notice_wait_s: tuple[float, float, float] | None = None  # written → sent (MQTT): p50, p99, max

    @property
    def ok(self) -> bool:
        return (bool(self.takeovers_s) and max(self.takeovers_s) <= TAKEOVER_TARGET_S and self.lost == 0
                and self.doubled == 0 and self.notices_doubled == 0 and self.notices_unsent == 0
                and self.registration_seen_s <= 1.0 and self.session_fights_after == 0
                and (self.escalation_late_s is None or self.escalation_late_s <= TAKEOVER_TARGET_S))


def format_host_loss_table(reports: list[HostLossReport]) -> str:
    rows = ["| fault | takeover p50 / max | alarms published | incidents | lost | doubled | notices sent | "
            "notices doubled | unsent | registration seen by the other | escalation after its deadline | "
            "session fights after | notice written → sent p50 / p99 / max | target met |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in reports:
        t = sorted(r.takeovers_s)
        p50 = t[len(t) // 2] if t else float("nan")
        late = "—" if r.escalation_late_s is None else f"{r.escalation_late_s:.1f} s"
        wait = "—" if r.notice_wait_s is None else " / ".join(f"{w:.1f}" for w in r.notice_wait_s) + " s"
        rows.append(f"| {r.fault} | {p50:.1f} / {max(t, default=float('nan')):.1f} s | {r.published} | {r.opened} | "
                    f"{r.lost} | {r.doubled} | {r.notices_sent} | {r.notices_doubled} | {r.notices_unsent} | "
                    f"{r.registration_seen_s * 1000:.0f} ms | {late} | {r.session_fights_after} | {wait} | "
                    f"{'yes' if r.ok else 'NO'} |")
    return "\n".join(rows)


class DutyListener:
    """Every notice the dispatcher publishes (``dispatch/v1/#``), counted by its exact topic and payload."""

    def __init__(self, broker: MosquittoServer) -> None:
        self.copies: Counter[tuple[str, bytes]] = Counter()
        self._lock = threading.Lock()
        self._subscriber = Subscriber(broker.host, broker.port, f"{DISPATCH_ROOT}/#", self._on_message,
                                      client_id=f"chaos-duty-{uuid.uuid4().hex[:6]}")
        if not self._subscriber.wait(10):
            raise RuntimeError("the duty listener could not subscribe")

    def _on_message(self, msg: MQTTMessage) -> None:
        if msg.dup:  # the broker's own re-send of a packet it already gave us: not the service's doing
            return
        with self._lock:
            self.copies[(msg.topic, msg.payload)] += 1

    @property
    def sent(self) -> int:
        with self._lock:
            return len(self.copies)

    @property
    def doubled(self) -> int:
        with self._lock:
            return sum(n - 1 for n in self.copies.values())

    def close(self) -> None:
        self._subscriber.close()


class Instance(ServiceProcess):
    """One of the service's instances: the shared database and client id, a data directory of its own."""

    def __init__(self, workdir: Path, broker: MosquittoServer, database_url: str, client_id: str, name: str,
                 policy_file: Path | None = None) -> None:
        super().__init__(workdir, broker, alert_tick_s=0.5, extra_env={
            "WANLI_DATABASE_URL": database_url, "WANLI_MQTT_CLIENT_ID": client_id, "WANLI_INSTANCE_NAME": name,
            **({"WANLI_POLICY_FILE": str(policy_file)} if policy_file else {})})
        self.name = name
        self.ingest_role = f"ingest:{client_id}"

    def roles(self) -> dict[str, Any]:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2, trust_env=False).json()  # type: ignore[no-any-return]
        except (httpx.HTTPError, ValueError):
            return {}

    def ingests(self) -> bool:
        r = self.roles()
        return self.ingest_role in r.get("held", ()) and r.get("ingest") == "subscribed"

    def signal_group(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, sig)


def _iso_ms(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def fire_deadline_policy(workdir: Path, first_step_s: int) -> Path:
    """The shipped escalation policies with a smoke alarm's first step due after ``first_step_s`` (a shorter
    wait for the probe's deadline in tests; the chaos command keeps the street's 60 s)."""
    from alerts.policies import default_document_text

    document = json.loads(default_document_text())
    document["policies"]["fire"]["steps"][0]["ack_within_s"] = first_step_s
    path = workdir / "policies.json"
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, ensure_ascii=False), "utf-8")
    return path


def host_loss(workdir: Path, broker: MosquittoServer, database_url: str, *, kills: int = 1, freeze_s: float = 0.0,
              rate: float = 20.0, between_s: float = 12.0, first_step_s: int | None = None) -> HostLossReport:
    """See the module's docstring. ``freeze_s`` > 0: one freeze of that length instead of ``kills`` kills.
    ``first_step_s``: a smoke alarm's first escalation step after this many seconds (default: the policy's 60)."""
    client_id = f"wanli-ha-{uuid.uuid4().hex[:6]}"
    policy = fire_deadline_policy(workdir, first_step_s) if first_step_s else None
    a = Instance(workdir / "a", broker, database_url, client_id, "host-a", policy)
    b = Instance(workdir / "b", broker, database_url, client_id, "host-b", policy)
    listener: DutyListener | None = None
    publisher: Devices | None = None
    faults = 1 if freeze_s else kills
    try:
        a.start()
        b.start()
        wait_for(a.ingests, 30, what="the first instance to ingest")
        listener = DutyListener(broker)
        storm_s = 8 + faults * (between_s + (freeze_s if freeze_s else 0)) + 4
        records = storm_devices(a.hierarchy, int(rate * storm_s) + 1, prefix="SD-HA")
        probe_record, storm_records = records[-1], records[:-1]
        b.sign_in()
        a.register(records)
        registered = time.monotonic()  # committed through the first; the second answers for it from memory
        seen = wait_for(lambda: _visible(b, probe_record.device_id), 10, interval_s=0.01,
                        what="the registration seen by the other instance")
        registration_seen_s = max(0.0, seen - registered)

        publisher = Devices(broker, connections=2)
        probe = SmokeDetectorSim(probe_record.device_id, seq=now_ms())
        publisher.publish(0, probe.alarm(now_ms()))
        probe_incident = wait_for(lambda: _incident_of(a, probe_record), 30, what="the probe's incident")
        deadline_ms = _iso_ms(probe_incident["next_escalation_at"])

        sims = [SmokeDetectorSim(r.device_id, seq=now_ms()) for r in storm_records]
        # the storm starts 8 s before the probe's deadline; the first fault falls 2 s before it
        time.sleep(max(0.0, (deadline_ms - now_ms()) / 1000 - 8))
        takeovers: list[float] = []
        with in_background(lambda: publish_paced(publisher, sims, lambda d, t: d.alarm(t), len(sims), rate)):
            time.sleep(max(0.0, (deadline_ms - now_ms()) / 1000 - 2))
            for k in range(faults):
                holder, other = (a, b) if a.ingests() else (b, a)
                began = time.monotonic()
                if freeze_s:
                    holder.signal_group(signal.SIGSTOP)
                else:
                    holder.kill()
                wait_for(other.ingests, 60, interval_s=0.05, what="the other instance to take ingest over")
                takeovers.append(time.monotonic() - began)
                if freeze_s:
                    time.sleep(max(0.0, freeze_s - (time.monotonic() - began)))
                    holder.signal_group(signal.SIGCONT)
                    wait_for(lambda h=holder: h.roles().get("held") == [], 15, what="the resumed instance to "
                             "find it holds nothing")
                else:
                    holder.start()  # the new standby
                fights_mark = _fights(broker, client_id)
                if k + 1 < faults:
                    time.sleep(between_s)
        publisher.wait_acknowledged()
        published = publisher.acknowledged - 1  # the probe's alarm is not the storm's
        survivor = a if a.running else b
        try:
            wait_for(lambda: account_alarms(survivor, storm_records, 1)[1] == 0, 120, interval_s=0.5,
                     what="every alarm counted")
        except TimeoutError:
            pass  # the report says what is missing
        notices = create_engine(database_url)
        try:
            wait_for(lambda: _unsent_notices(notices) == 0, 30, interval_s=0.5, what="every notice sent")
        except TimeoutError:
            pass
        time.sleep(2)  # anything sent twice late shows now
        unsent = _unsent_notices(notices)
        unsent_rows = _unsent_detail(notices) if unsent else []
        notice_wait = _notice_wait_s(notices)
        notices.dispose()
        opened, lost, doubled = account_alarms(survivor, storm_records, 1)
        detail = survivor.get(f"/api/incidents/{probe_incident['id']}")
        escalated = [_iso_ms(e["at"]) for e in detail["audit"] if e["action"] == "escalate"]
        late = (min(escalated) - deadline_ms) / 1000 if escalated else None
        return HostLossReport(
            f"host frozen (SIGSTOP {freeze_s:.0f} s) mid-storm" if freeze_s else f"host lost (SIGKILL) x{kills} mid-storm",
            takeovers, published, opened, lost, doubled, listener.sent, listener.doubled, unsent,
            registration_seen_s, late, _fights(broker, client_id) - fights_mark,
            details={"instances": 2, "rate": rate, "storm_alarms": len(sims),
                     **({"unsent": unsent_rows} if unsent else {})}, notice_wait_s=notice_wait)
    finally:
        if publisher is not None:
            publisher.close()
        if listener is not None:
            listener.close()
        for instance in (a, b):
            if instance.process is not None:
                try:
                    instance.signal_group(signal.SIGCONT)
                except ProcessLookupError:
                    pass
            instance.close()


def _visible(instance: Instance, device_id: str) -> float | None:
    """When the instance first answered with the device (time.monotonic()), or None while it does not."""
    try:
        resp = instance._http.get(f"/api/devices/{device_id}", timeout=2)  # noqa: SLF001 - its signed-in client
    except httpx.HTTPError:
        return None
    return time.monotonic() if resp.status_code == 200 else None


def _incident_of(instance: Instance, record: Any) -> dict[str, Any] | None:
    for incident in instance.get("/api/incidents", building_id=record.building_id, limit=1000):
        if incident["device_id"] == record.device_id and incident.get("next_escalation_at"):
            return incident  # type: ignore[no-any-return]
    return None


def _unsent_detail(engine: Engine) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT id, topic, attempts, last_error, created_ms FROM notifications WHERE sent_ms IS NULL "
            "AND channel = 'mqtt' ORDER BY id LIMIT 20"))]


def _unsent_notices(engine: Engine, in_flight_ms: int = 5_000) -> int:
    """Notices still unsent that were written more than ``in_flight_ms`` ago (the escalations go on climbing
    while the run ends: what a tick wrote a moment ago is on its way, not stuck)."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM notifications WHERE sent_ms IS NULL "
                                     "AND channel = 'mqtt' AND created_ms < :before"),
                                {"before": now_ms() - in_flight_ms}).scalar_one())


def _notice_wait_s(engine: Engine) -> tuple[float, float, float] | None:
    """How long the MQTT notices waited in the outbox, from written to sent (its takeovers included): p50, p99,
    max in seconds; None when none was sent."""
    with engine.connect() as conn:
        waits = sorted(int(w) for w in conn.execute(text(
            "SELECT sent_ms - created_ms FROM notifications WHERE sent_ms IS NOT NULL AND channel = 'mqtt'")).scalars())
    if not waits:
        return None
    return (waits[len(waits) // 2] / 1000, waits[min(len(waits) - 1, len(waits) * 99 // 100)] / 1000, waits[-1] / 1000)


def _fights(broker: MosquittoServer, client_id: str) -> int:
    """Session take-overs the broker logged for the service's client ids ("already connected")."""
    try:
        log = broker.log_path.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return sum(1 for line in log.splitlines() if "already connected" in line and client_id in line)
