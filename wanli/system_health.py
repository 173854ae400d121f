"""The service looking at itself: which faults of the alarm path hold now (the shell of ``alerts/system_faults.py``).

Each tick of the alert ticker, ``SystemHealth.check(now_ms)`` asks the running pieces how
they are (the drainer and its store, the spool, the disks, the receivers, the outbox, the
dead letters per device, the devices' clocks) and returns the ``Fault``s that hold; the
ticker hands them to ``SystemFaults`` and the alert engine, and ``/readyz`` reads the last
list: 503 naming each fault that impairs the alarm path, 200 with the others listed as
degraded. Every threshold is a setting (``fault_*``, ``disk_*``: docs/configuration.md).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from alerts.incidents import Severity
from alerts.outbox import Outbox
from alerts.system_faults import Fault
from ingest.pipeline import IngestPipeline
from ingest.spool import Spool, SpoolDrainer
from ingest.telemetry import TelemetryStore
from foundation.disk_guard import DiskGuard

log = logging.getLogger(__name__)

ROLE_ZH = {"ingest": "接收设备消息", "escalation": "逐级上报计时", "dispatch": "发送通知与派单"}
ROLE_DUTY = {"ingest": "no device message becomes an incident.",
             "escalation": "no unacknowledged incident climbs to the next tier.",
             "dispatch": "no notice or dispatch leaves."}

MINUTE_MS = 60_000
RESTART_WINDOW_MS = 5 * MINUTE_MS
CLOCK_SKEW_GRACE_S = 20.0  # a server clock that is off stays off: no incident for a passing burst of odd stamps
OUTBOX_EVERY_MS = 5_000  # the outbox's oldest pending notice is asked at most this often (one indexed query)


@dataclass
class HealthThresholds:
    telemetry_down_s: float = 60.0
    notices_stuck_s: float = 120.0
    broker_down_s: float = 30.0
    receiver_restarts: int = 3
    dead_letters_per_min: int = 120
    clock_skew_s: float = 120.0
    spool_warn_fill: float = 0.8


@dataclass
class _Memory:
    restarts_seen: int = 0
    restarts_at: deque[int] = field(default_factory=deque)
    letters: deque[tuple[int, Counter[str]]] = field(default_factory=deque)
    outbox_checked_ms: int = -OUTBOX_EVERY_MS
    oldest_pending: tuple[int, str, str] | None = None  # (created_ms, channel, recipient)
    tick_error: str = ""
    tick_failing_since_ms: int | None = None


class SystemHealth:
    def __init__(self, *, pipeline: IngestPipeline, spool: Spool, drainer: SpoolDrainer, telemetry: TelemetryStore,
                 disk_guard: DiskGuard, outbox: Outbox | None, thresholds: HealthThresholds,
                 ingest_subscribed: Callable[[], bool] = lambda: True,
                 receiver_restarts: Callable[[], int] = lambda: 0,
                 notify_faults: Callable[[int], list[str]] = lambda _now: [],
                 broker_access: Callable[[], object | None] = lambda: None,
                 roles_unheld: Callable[[], list[tuple[str, float]]] = lambda: []) -> None:
        self._pipeline, self._spool, self._drainer = pipeline, spool, drainer
        self._telemetry, self._disk, self._outbox = telemetry, disk_guard, outbox
        self._t = thresholds
        self._subscribed, self._restarts = ingest_subscribed, receiver_restarts
        self._notify_faults = notify_faults
        self._broker_access = broker_access
        self._roles_unheld = roles_unheld  # (role, seconds without a holder), several instances (foundation/leases.py)
        self._m = _Memory()
        self.faults: list[Fault] = []  # as of the last check: what /readyz tells

    # -- what the ticker tells us about itself --

    def tick_failed(self, error: str, now_ms: int) -> None:
        """The alert ticker could not write (the database is away or its disk full): the alarm path is impaired."""
        m = self._m
        m.tick_error = error
        if m.tick_failing_since_ms is None:
            m.tick_failing_since_ms = now_ms

    def tick_ok(self) -> None:
        self._m.tick_error, self._m.tick_failing_since_ms = "", None

    # -- looking --

    def check(self, now_ms: int) -> list[Fault]:
        faults: list[Fault] = []
        for probe in (self._store, self._spool_fill, self._disks, self._broker, self._receiver, self._notices,
                      self._channels, self._access, self._dead_letters, self._clock, self._database, self._roles):
            try:
                faults += probe(now_ms)
            except Exception:  # a probe that fails must not stop the others (nor the ticker)
                log.exception("system health probe %s failed", probe.__name__)
        self.faults = faults
        return faults

    def _store(self, now_ms: int) -> list[Fault]:
        d = self._drainer
        missing = getattr(self._telemetry, "database_missing", "")
        if missing:
            return [Fault("influx_database_missing", "时序库数据库不存在，遥测暂存本地", missing, after_s=0)]
        if d.store_up:
            return []
        # How long it has held is SystemFaults' business (after_s): the incident opens once it has held that long.
        return [Fault("telemetry_unreachable", "时序库（遥测存储）不可用，遥测暂存本地",
                      f"telemetry store {self._telemetry.name} refuses writes (an incident once for "
                      f"{self._t.telemetry_down_s:.0f} s): {d.last_error}; readings are kept in the spool and written when it is back; alarms "
                      "are not affected", after_s=self._t.telemetry_down_s)]

    def _spool_fill(self, now_ms: int) -> list[Fault]:
        state = self._spool.state()
        refusal = self._pipeline.spool_refusal
        c = self._pipeline.counters
        held = f"; held back {c.telemetry_held} messages, dropped {c.telemetry_dropped_points} points so far"
        if refusal or state.fill >= 1.0:
            return [Fault("spool_full", "遥测暂存已满，遥测被暂缓接收",
                          f"{refusal or 'the telemetry spool is at its bound'} ({state.points} of "
                          f"{state.limit_points} points){held}; alarms are committed as usual")]
        if state.fill >= self._t.spool_warn_fill:
            return [Fault("spool_high", "遥测暂存超过 80%", f"the telemetry spool holds {state.points} of "
                          f"{state.limit_points} points ({state.fill:.0%}): the telemetry store is not keeping up",
                          severity=Severity.WARNING)]
        return []

    def _disks(self, now_ms: int) -> list[Fault]:
        out: list[Fault] = []
        for s in self._disk.states():
            figures = (f"{s.path}: {s.fill:.0%} full, {s.free_bytes / 1e6:.0f} MB free "
                       f"(reserve for alarms {s.reserve_bytes / 1e6:.0f} MB)")
            if not s.bulk_allowed:
                out.append(Fault("disk_reserve", "数据盘空间已到告警保留区，遥测与死信已停写",
                                 f"{figures}: telemetry, dead letters and device-state flushes stopped; incidents "
                                 "go on in the reserve; free space on this disk now",
                                 severity=Severity.CRITICAL, impairs_alarms=True))
            elif s.fill >= self._disk.alert_fill:
                out.append(Fault("disk_high", "数据盘空间将满", f"{figures}: above {self._disk.alert_fill:.0%}"))
        return out

    def _broker(self, now_ms: int) -> list[Fault]:
        if self._subscribed():
            return []
        return [Fault("broker_unreachable", "接入服务未连上 MQTT 服务器，告警无法接收",
                      f"ingest is not subscribed to the broker (an incident once for {self._t.broker_down_s:.0f} s)",
                      severity=Severity.CRITICAL, impairs_alarms=True, after_s=self._t.broker_down_s)]

    def _receiver(self, now_ms: int) -> list[Fault]:
        m = self._m
        restarts = self._restarts()
        for _ in range(restarts - m.restarts_seen):
            m.restarts_at.append(now_ms)
        m.restarts_seen = restarts
        while m.restarts_at and now_ms - m.restarts_at[0] > RESTART_WINDOW_MS:
            m.restarts_at.popleft()
        if len(m.restarts_at) < self._t.receiver_restarts:
            return []
        return [Fault("receiver_restarting", "MQTT 接收进程反复重启",
                      f"the MQTT receiver process restarted {len(m.restarts_at)} times in 5 minutes "
                      f"({restarts} since start); see the service's log",
                      impairs_alarms=True)]

    def _notices(self, now_ms: int) -> list[Fault]:
        m = self._m
        if self._outbox is None:
            return []
        if now_ms - m.outbox_checked_ms >= OUTBOX_EVERY_MS:
            m.outbox_checked_ms = now_ms
            rows = self._outbox.pending(1)
            m.oldest_pending = (rows[0].created_ms, rows[0].channel, rows[0].recipient) if rows else None
        if m.oldest_pending is None:
            return []
        created_ms, channel, recipient = m.oldest_pending
        age_s = (now_ms - created_ms) / 1000
        if age_s < self._t.notices_stuck_s:
            return []
        return [Fault(f"notices_stuck_{channel}", "通知发送失败，责任人未收到告警",
                      f"the oldest unsent notice ({channel}, to {recipient}) has waited {age_s:.0f} s: the "
                      f"dispatcher or the {channel} channel is failing; see the incident's notices",
                      severity=Severity.CRITICAL, impairs_alarms=True)]

    def _channels(self, now_ms: int) -> list[Fault]:
        """A channel that reaches people (SMS, voice, WeCom, e-mail: alerts/notify) failing past its grace."""
        out = []
        for code in self._notify_faults(now_ms):
            channel = code.partition(":")[2]
            out.append(Fault(f"notify_channel_failing_{channel}", f"通知渠道 {channel} 发送失败",
                             f"every attempt through the {channel} channel has failed for longer than its grace "
                             "period: people are reached through their other contact points meanwhile; check the "
                             "provider's account, keys and the network", severity=Severity.HIGH))
        return out

    def _access(self, now_ms: int) -> list[Fault]:
        """A credential change the broker has not confirmed in time (devices/broker_access.py): a device just given
        access may still be refused, a retired (stolen) one may still get in."""
        cond = self._broker_access()
        if cond is None:
            return []
        return [Fault("broker_access_unconfirmed", "设备接入凭据变更未被 MQTT 服务器确认",
                      str(getattr(cond, "detail", cond)), severity=Severity.HIGH)]

    def _roles(self, now_ms: int) -> list[Fault]:
        """A role no instance holds (foundation/leases.py): its work is not being done anywhere."""
        return [Fault(f"role_unheld_{role}", f"无实例承担“{ROLE_ZH.get(role, role)}”职责",
                      f"no instance has held the {role} role for {seconds:.0f} s: {ROLE_DUTY.get(role, '')} Start an "
                      "instance that may take it (WANLI_ROLES), or see why the others cannot (their logs, "
                      "the database's reachability)", severity=Severity.CRITICAL, impairs_alarms=True)
                for role, seconds in self._roles_unheld()]

    def _dead_letters(self, now_ms: int) -> list[Fault]:
        m = self._m
        m.letters.append((now_ms, self._pipeline.take_letters_by_device()))
        while m.letters and now_ms - m.letters[0][0] > MINUTE_MS:
            m.letters.popleft()
        total: Counter[str] = Counter()
        for _, counts in m.letters:
            total.update(counts)
        bound = self._t.dead_letters_per_min
        return [Fault("dead_letter_flood", "设备持续发送错误消息",
                      f"device {device} sent {n} messages ingest could not accept in the last minute (bound {bound}); "
                      "they are counted and sampled, not stored one by one; check its firmware or its credentials",
                      severity=Severity.WARNING, device_id=device)
                for device, n in total.most_common(20) if n > bound and device]

    def _clock(self, now_ms: int) -> list[Fault]:
        skew = self._pipeline.clock_skew
        median = skew.median_ms
        if median is None or abs(median) < self._t.clock_skew_s * 1000:
            return []
        way = "behind" if median > 0 else "ahead of"
        return [Fault("clock_skew", "服务器时钟与多数设备不一致",
                      f"the server's clock is {abs(median) / 1000:.0f} s {way} the median of {skew.devices} devices; "
                      "devices are judged against the corrected time meanwhile; fix the server's NTP",
                      severity=Severity.HIGH, after_s=CLOCK_SKEW_GRACE_S)]

    def _database(self, now_ms: int) -> list[Fault]:
        m = self._m
        if m.tick_failing_since_ms is None:
            return []
        return [Fault("database_unwritable", "数据库无法写入，告警无法记录",
                      f"the alert engine could not write for {(now_ms - m.tick_failing_since_ms) / 1000:.0f} s: "
                      f"{m.tick_error}", severity=Severity.CRITICAL, impairs_alarms=True)]
