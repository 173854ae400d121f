"""``wanli chaos --only alarm-path``: the faults around the alarm path, each against real servers, one table.

Every fault here once blocked or dropped alarms while ``/readyz`` said 200 (issue 13). Each
function starts the service as its own OS process (``tooling/chaos.py``'s ``ServiceProcess``)
on a real Mosquitto (and InfluxDB 1.x), injects the fault, sends smoke alarms from
registered detectors during it, and reports:

    fault · alarms sent · incidents opened · alarm → incident p50/p99 during the fault
    · system incident raised after N s · /readyz during · telemetry held/lost by policy
    · whether the system incident closed itself once the fault was removed

    influx_down          InfluxDB stopped: telemetry spooled, ``telemetry_unreachable`` raised, closed when back
    spool_bound          InfluxDB stopped and a spool of 1,000 points: telemetry held (not acknowledged), ``spool_full``
    disk_full            the data directory on a small tmpfs filled to below the alarm reserve: ``disk_reserve``, 503
    database_missing     the InfluxDB database dropped under the running service: created again, nothing lost
    flooding_device      one detector publishing 16 KiB of invalid JSON as fast as it can: ``dead_letter_flood``
    device_clock         alarms stamped 8 days in the past: incidents opened, flagged
    sequence_glitch      a heartbeat numbered 2^53, then alarms; then a reboot with a restarted counter
    server_clock_slow    the service's clock 5 minutes slow: every device ahead; ``clock_skew`` raised

``tests/reliability/test_alarm_path_faults.py`` runs each at a small size and asserts: every
alarm became an incident, the system incident was raised (and cleared), ``/readyz`` told.
Figures and the command: docs/reliability.md, "The alarm path stands alone".
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from devices.registry import DeviceRecord
from simulators.devices.base import Publication
from devices.kinds.smoke_detector.simulator import SmokeDetectorSim
from tooling.chaos import Devices, ServiceProcess, in_background, now_ms, publish_paced, storm_devices, wait_for
from tooling.local_servers import InfluxV1Server, MosquittoServer

DAY_MS = 86_400_000


@dataclass
class AlarmPathReport:
    fault: str
    alarms_sent: int
    incidents: int  # alarms that opened (or were counted in) their incident during the fault
    latency_ms: tuple[float, float]  # alarm published → incident opened, p50 / p99
    system_incident: str  # the condition raised, or "—" where the fault needs none
    raised_after_s: float | None  # from the fault's start to the system incident on the wall
    readyz: str  # what /readyz said during the fault
    telemetry: str  # what happened to telemetry, by policy
    cleared: bool | None  # the system incident closed itself once the fault was gone (None: not applicable)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        raised = self.system_incident == "—" or self.raised_after_s is not None
        return self.incidents == self.alarms_sent and raised and self.cleared is not False


def format_alarm_path_table(reports: Sequence[AlarmPathReport]) -> str:
    header = ("fault", "alarms sent", "incidents", "alarm→incident p50 / p99", "system incident raised after",
              "readyz during", "telemetry (policy)", "cleared")
    rows = [(r.fault, f"{r.alarms_sent}", f"{r.incidents}", f"{r.latency_ms[0]:.0f} / {r.latency_ms[1]:.0f} ms",
             "—" if r.system_incident == "—" else
             f"{r.system_incident} {r.raised_after_s:.1f} s" if r.raised_after_s is not None else
             f"{r.system_incident} NOT RAISED",
             r.readyz, r.telemetry, "—" if r.cleared is None else ("yes" if r.cleared else "NO")) for r in reports]
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    out = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True)) + " |",
           "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in rows]
    for r in reports:
        if r.details:
            out.append(f"  {r.fault}: " + ", ".join(f"{k}={v}" for k, v in r.details.items()))
    return "\n".join(out)


# --- the pieces every fault uses ---------------------------------------------------------------------


@dataclass
class Street:
    service: ServiceProcess
    devices: Devices
    records: list[DeviceRecord]
    sims: list[SmokeDetectorSim]


@contextmanager
def running(workdir: Path, broker: MosquittoServer, *, influx: InfluxV1Server | None = None, detectors: int = 30,
            env: dict[str, str] | None = None, clock_offset_ms: int | None = None,
            data_dir: Path | None = None) -> Iterator[Street]:
    """The service on the broker (and InfluxDB) with ``detectors`` registered; ``data_dir``: elsewhere than the
    work dir (a small disk: the service's log stays off it)."""
    env = {"WANLI_FAULT_TELEMETRY_DOWN_S": "2", **(env or {})}
    if data_dir is not None:
        env["WANLI_DATA_DIR"] = str(data_dir)
    service = ServiceProcess(workdir, broker, influx=influx, alert_tick_s=0.2, extra_env=env)
    if data_dir is not None:
        service.data_dir = data_dir
    publisher = None
    try:
        service.start(clock_offset_ms)
        records = storm_devices(service.hierarchy, detectors, prefix="SD-AP")
        service.register(records)
        publisher = Devices(broker, connections=2)
        yield Street(service, publisher, records, [SmokeDetectorSim(r.device_id, seq=1000) for r in records])
    finally:
        if publisher is not None:
            publisher.close()
        service.close()


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def send_alarms(street: Street, which: Sequence[int], make: Callable[[SmokeDetectorSim, int], Publication] | None = None,
                gap_s: float = 0.02) -> dict[str, int]:
    """One alarm from each of these detectors, a little apart; when each was published (wall ms)."""
    sent: dict[str, int] = {}
    for i in which:
        sim = street.sims[i]
        at = now_ms()
        street.devices.publish(i, make(sim, at) if make else sim.alarm(at))
        sent[sim.device_id] = at
        time.sleep(gap_s)
    return sent


def alarm_incidents(street: Street, sent: dict[str, int], timeout_s: float = 30,
                    clock_offset_ms: int = 0) -> tuple[int, tuple[float, float]]:
    """How many of these alarms opened (or were counted in) their device's incident, and p50/p99 publish → opened.

    ``clock_offset_ms``: how far the service's clock is off the wall (incidents are stamped by it)."""
    def found() -> dict[str, dict[str, Any]]:
        by_device: dict[str, dict[str, Any]] = {}
        for building in sorted({r.building_id for r in street.records}):
            for inc in street.service.get("/api/incidents", building_id=building, limit=1000):
                if inc["condition"] == "smoke_alarm" and inc["device_id"] in sent:
                    by_device[inc["device_id"]] = inc
        return by_device

    try:
        wait_for(lambda: len(found()) >= len(sent), timeout_s, interval_s=0.2, what="every alarm's incident")
    except TimeoutError:
        pass  # the report says how many are missing
    incidents = found()
    lat = [max(0, _ms(inc["opened_at"]) - clock_offset_ms - sent[d]) for d, inc in incidents.items()]
    p = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99))) if lat else (float("nan"), float("nan"))
    return len(incidents), p


def system_incident(street: Street, condition: str, active: bool | None = None) -> dict[str, Any] | None:
    for inc in street.service.get("/api/incidents", limit=1000):
        if inc["category"] == "system" and inc["condition"] == condition:
            if active is None or (inc["state"] not in ("closed", "false_alarm", "merged")) == active:
                return inc  # type: ignore[no-any-return]
    return None


def wait_raised(street: Street, condition: str, since_ms: int, timeout_s: float = 30) -> float | None:
    try:
        inc = wait_for(lambda: system_incident(street, condition, active=True), timeout_s, interval_s=0.2,
                       what=f"system incident {condition}")
    except TimeoutError:
        return None
    return (_ms(inc["opened_at"]) - since_ms) / 1000


def wait_cleared(street: Street, condition: str, timeout_s: float = 60) -> bool:
    try:
        wait_for(lambda: system_incident(street, condition, active=False) and
                 not system_incident(street, condition, active=True), timeout_s, interval_s=0.3,
                 what=f"system incident {condition} closed")
        return True
    except TimeoutError:
        return False


def readyz(street: Street) -> str:
    resp = street.service._http.get("/readyz", timeout=5)
    body = resp.json()
    named = [f["condition"] for f in body.get("impaired", [])] or [f["condition"] for f in body.get("degraded", [])]
    return f"{resp.status_code} {','.join(named)}".strip()


def stats(street: Street) -> dict[str, Any]:
    return street.service.stats()


# --- the faults ----------------------------------------------------------------------------------------


def quiet(workdir: Path, broker: MosquittoServer, *, detectors: int = 30) -> AlarmPathReport:
    """No fault: the figure every fault's latency is held against (at most twice it)."""
    with running(workdir, broker, detectors=detectors) as street:
        half = detectors // 2
        publish_paced(street.devices, street.sims[half:], lambda d, t: d.heartbeat(t), 200, 200)
        sent = send_alarms(street, range(half))
        opened, latency = alarm_incidents(street, sent)
        return AlarmPathReport("no fault (baseline)", len(sent), opened, latency, "—", None, readyz(street),
                               "all stored", None)


def influx_down(workdir: Path, broker: MosquittoServer, influx: InfluxV1Server, *, detectors: int = 30) -> AlarmPathReport:
    with running(workdir, broker, influx=influx, detectors=detectors) as street:
        half = detectors // 2
        influx.stop()
        began = now_ms()
        try:
            publish_paced(street.devices, street.sims[half:], lambda d, t: d.heartbeat(t), 200, 200)
            sent = send_alarms(street, range(half))
            opened, latency = alarm_incidents(street, sent)
            raised = wait_raised(street, "telemetry_unreachable", began)
            ready = readyz(street)
            spooled = stats(street)["spool_points"]
        finally:
            influx.start()
        cleared = wait_cleared(street, "telemetry_unreachable")
        return AlarmPathReport("InfluxDB down", len(sent), opened, latency, "telemetry_unreachable", raised, ready,
                               f"spooled {spooled} points, none lost", cleared)


def spool_bound(workdir: Path, broker: MosquittoServer, influx: InfluxV1Server, *, detectors: int = 30,
                heartbeats: int = 1500) -> AlarmPathReport:
    with running(workdir, broker, influx=influx, detectors=detectors,
                 env={"WANLI_SPOOL_MAX_POINTS": "1000"}) as street:
        half = detectors // 2
        influx.stop()
        began = now_ms()
        try:
            publish_paced(street.devices, street.sims[half:], lambda d, t: d.heartbeat(t), heartbeats, 1000)
            wait_for(lambda: stats(street)["telemetry_held"] > 0, 30, what="telemetry held back")
            sent = send_alarms(street, range(half))
            opened, latency = alarm_incidents(street, sent)
            raised = wait_raised(street, "spool_full", began)
            ready = readyz(street)
            s = stats(street)
        finally:
            influx.start()
        cleared = wait_cleared(street, "spool_full", timeout_s=90)
        dropped = stats(street)["telemetry_dropped_points"]  # the alarms' own points, by policy (counted)
        stored = _wait_points(influx, street.service.influx_database, heartbeats + len(sent) - dropped)
        return AlarmPathReport(
            "telemetry spool at its bound", len(sent), opened, latency, "spool_full", raised, ready,
            f"hold: {s['telemetry_held']} held and re-sent by the broker, alarms' own points dropped {dropped}, "
            f"heartbeats lost {heartbeats + len(sent) - dropped - stored}",
            cleared, details={"points_stored_after": stored, "heartbeats_sent": heartbeats})


def _wait_points(influx: InfluxV1Server, database: str, expected: int, timeout_s: float = 90) -> int:
    from tooling.chaos import influx_count

    try:
        wait_for(lambda: influx_count(influx, database) >= expected, timeout_s, interval_s=0.5, what="points stored")
    except TimeoutError:
        pass
    return influx_count(influx, database)


class SmallDisk:
    """A tmpfs of ``size_mb`` mounted at ``path`` (root only), filled and freed on demand."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PermissionError(f"cannot mount a small tmpfs at {path} (run as root): {result.stderr.strip()}")
        self.filler = path / "filler.bin"

    def fill_leaving(self, free_bytes: int) -> None:
        st = os.statvfs(self.path)
        room = st.f_bavail * st.f_frsize - free_bytes
        with self.filler.open("ab") as f:
            f.write(b"\0" * max(0, room))

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)


def disk_full(workdir: Path, broker: MosquittoServer, *, detectors: int = 30, size_mb: int = 64,
              reserve_mb: int = 16) -> AlarmPathReport:
    disk = SmallDisk(workdir / "small-disk", size_mb)
    try:
        with running(workdir / "service", broker, detectors=detectors, data_dir=disk.path / "data",
                     env={"WANLI_DISK_RESERVE_MB": str(reserve_mb)}) as street:
            half = detectors // 2
            disk.fill_leaving(reserve_mb * 1_000_000 // 2)  # well inside the reserve
            began = now_ms()
            raised = wait_raised(street, "disk_reserve", began)  # the guard measures the disk once a second
            publish_paced(street.devices, street.sims[half:], lambda d, t: d.heartbeat(t), 200, 400)
            for i in range(half, detectors):  # bad input too: counted, not stored
                street.devices.publish(i, (f"safety/v1/wanli/smoke_detector/{street.sims[i].device_id}/event",
                                           "{not json"))
            sent = send_alarms(street, range(half))
            opened, latency = alarm_incidents(street, sent)
            ready = readyz(street)
            wait_for(lambda: stats(street)["dead_letters_unstored"] >= detectors - half, 10, what="bad input counted")
            s = stats(street)
            disk.free()
            cleared = wait_cleared(street, "disk_reserve")
            return AlarmPathReport(
                "data disk at the alarm reserve", len(sent), opened, latency, "disk_reserve", raised, ready,
                f"hold: {s['telemetry_held']} held, dead letters {s['dead_letters_unstored']} counted not stored",
                cleared, details={"disk_mb": size_mb, "reserve_mb": reserve_mb})
    finally:
        disk.close()


def database_missing(workdir: Path, broker: MosquittoServer, influx: InfluxV1Server, *,
                     detectors: int = 30) -> AlarmPathReport:
    with running(workdir, broker, influx=influx, detectors=detectors) as street:
        half = detectors // 2
        db = street.service.influx_database
        publish_paced(street.devices, street.sims[half:], lambda d, t: d.heartbeat(t), 50, 200)
        _wait_points(influx, db, 50, timeout_s=30)
        influx.query(f'DROP DATABASE "{db}"', db)
        publish_paced(street.devices, street.sims[half:], lambda d, t: d.heartbeat(t), 100, 200)
        sent = send_alarms(street, range(half))
        opened, latency = alarm_incidents(street, sent)
        ready = readyz(street)
        stored = _wait_points(influx, db, 100 + len(sent), timeout_s=30)
        return AlarmPathReport("InfluxDB database dropped", len(sent), opened, latency, "—", None, ready,
                               f"database created again; {100 + len(sent) - stored} of {100 + len(sent)} points lost",
                               None, details={"points_after_drop": stored})


def flooding_device(workdir: Path, broker: MosquittoServer, *, detectors: int = 30, flood_s: float = 10.0,
                    payload_kib: int = 16) -> AlarmPathReport:
    with running(workdir, broker, detectors=detectors, env={"WANLI_FAULT_DEAD_LETTERS_PER_MIN": "100"}) as street:
        noisy = street.sims[-1].device_id
        db_file = street.service.data_dir / "wanli.db"
        size_before = _db_bytes(db_file)
        garbage = "{" + "x" * (payload_kib * 1024 - 2)
        began = now_ms()
        sent_flood = [0]

        def flood() -> None:
            deadline = time.monotonic() + flood_s
            while time.monotonic() < deadline:
                street.devices.publish(detectors - 1, (f"safety/v1/wanli/smoke_detector/{noisy}/event", garbage))
                sent_flood[0] += 1
                if sent_flood[0] % 200 == 0:
                    time.sleep(0.05)

        with in_background(flood):
            time.sleep(1)
            sent = send_alarms(street, range(detectors - 1), gap_s=flood_s / (2 * detectors))
            opened, latency = alarm_incidents(street, sent)
            raised = wait_raised(street, "dead_letter_flood", began)
            ready = readyz(street)
        grown = (_db_bytes(db_file) - size_before) / 1e6
        return AlarmPathReport(
            f"one device flooding {payload_kib} KiB invalid JSON", len(sent), opened, latency, "dead_letter_flood",
            raised, ready, f"{sent_flood[0]} bad messages; database grew {grown:.1f} MB", None,
            details={"flood_messages": sent_flood[0], "db_growth_mb": f"{grown:.1f}"})


def _db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def device_clock(workdir: Path, broker: MosquittoServer, *, detectors: int = 30) -> AlarmPathReport:
    with running(workdir, broker, detectors=detectors) as street:
        sent = send_alarms(street, range(detectors), make=lambda sim, t: sim.alarm(t - 8 * DAY_MS))
        opened, latency = alarm_incidents(street, sent)
        flagged = sum(1 for inc in street.service.get("/api/incidents", limit=1000)
                      if inc["device_id"] in sent and inc["condition"] == "smoke_alarm"
                      and any("时钟" in f for f in inc.get("flags", [])))
        return AlarmPathReport("device clocks 8 days behind", len(sent), opened, latency, "—", None, readyz(street),
                               "heartbeats with such clocks dead-lettered (ts_past)", None,
                               details={"incidents_flagged": flagged})


def sequence_glitch(workdir: Path, broker: MosquittoServer, *, detectors: int = 30) -> AlarmPathReport:
    with running(workdir, broker, detectors=detectors) as street:
        for i, sim in enumerate(street.sims):  # a firmware glitch: one heartbeat numbered 2^53
            street.devices.publish(i, sim.heartbeat(now_ms()))
            saved = sim.seq
            sim.seq = 2**53 - 1
            street.devices.publish(i, sim.heartbeat(now_ms()))
            sim.seq = saved
        sent = send_alarms(street, range(detectors))
        opened, latency = alarm_incidents(street, sent)
        for i, sim in enumerate(street.sims):  # then a reboot: the counter starts again at 100
            sim.seq = 100
            street.devices.publish(i, sim.online(now_ms()))
        rebooted = send_alarms(street, range(detectors), make=lambda sim, t: sim.alarm(t))
        street.devices.wait_acknowledged(30)
        try:
            wait_for(lambda: sum(inc["event_count"] for inc in street.service.get("/api/incidents", limit=1000)
                                 if inc["device_id"] in rebooted) >= 2 * detectors, 30, what="alarms after reboot")
        except TimeoutError:
            pass
        counted = sum(inc["event_count"] for inc in street.service.get("/api/incidents", limit=1000)
                      if inc["device_id"] in rebooted and inc["condition"] == "smoke_alarm")
        s = stats(street)
        return AlarmPathReport("sequence 2^53, then a reboot", 2 * detectors, min(counted, 2 * detectors), latency,
                               "—", None, readyz(street), f"{s['seq_jumps']} jumps, {s['seq_resets']} resets; none "
                               f"dead-lettered as seq_backwards ({s['rejected'].get('seq_backwards', 0)})", None,
                               details={"first_alarms_opened": opened})


def server_clock_slow(workdir: Path, broker: MosquittoServer, *, detectors: int = 30,
                      slow_ms: int = 300_000) -> AlarmPathReport:
    with running(workdir, broker, detectors=detectors, clock_offset_ms=-slow_ms) as street:
        began = now_ms() - slow_ms  # in the service's clock
        for _ in range(2):
            publish_paced(street.devices, street.sims, lambda d, t: d.heartbeat(t), detectors, 300)
        sent = send_alarms(street, range(detectors))
        opened, latency = alarm_incidents(street, sent, clock_offset_ms=-slow_ms)  # incidents stamped by the slow clock
        raised = wait_raised(street, "clock_skew", began, timeout_s=60)
        s = stats(street)
        return AlarmPathReport("server clock 5 min slow", len(sent), opened, latency, "clock_skew", raised,
                               readyz(street), f"{s['rejected'].get('ts_future', 0)} heartbeats refused before "
                               "the devices' median corrected the clock", None)


ALARM_PATH_FAULTS = {
    "quiet": quiet, "influx_down": influx_down, "spool_bound": spool_bound, "disk_full": disk_full,
    "database_missing": database_missing, "flooding_device": flooding_device, "device_clock": device_clock,
    "sequence_glitch": sequence_glitch, "server_clock_slow": server_clock_slow,
}
NEEDS_INFLUX = {"influx_down", "spool_bound", "database_missing"}


def run_alarm_path(workdir: Path, broker: MosquittoServer, influx: InfluxV1Server, detectors: int = 30
                   ) -> list[AlarmPathReport]:
    import sys

    reports = []
    for name, fault in ALARM_PATH_FAULTS.items():
        print(f"chaos: alarm path, {name} …", file=sys.stderr, flush=True)
        args = (workdir / name, broker, influx) if name in NEEDS_INFLUX else (workdir / name, broker)
        try:
            reports.append(fault(*args, detectors=detectors))  # type: ignore[operator]
        except PermissionError as exc:  # the small disk needs root
            print(f"chaos: {name} skipped: {exc}", file=sys.stderr, flush=True)
        print(format_alarm_path_table(reports[-1:]), file=sys.stderr, flush=True)
    return reports
