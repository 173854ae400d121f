"""One batch of raw MQTT messages through decode → registry → hygiene → spool → alerts → commit.

No MQTT here: the consumer hands in batches and acknowledges them to the broker only after
``process`` returns, so a batch that raises is redelivered rather than lost. Each batch is
one unit of work (``ingest/unit_of_work.py``): admit → spool → evaluate → ``commit()``.

1. admit: decode and validate every message; check its device is registered (else
   quarantine), the message's one registry lookup, whose registration then travels on the
   reading (``Reading.registration``: the rules' place and the incident's location come from
   it); judge its clock and its sequence number (``ingest/hygiene.py``, ``devices/sequence.py``):
   a duplicate is dropped and counted; an *event* (alarm, press, fault) with a wrong clock,
   a sequence going backwards or jumping is evaluated all the same and carries a flag;
   telemetry that fails is dead-lettered;
2. append its time-series points to the durable spool (fsynced), which a drainer moves to
   the telemetry store: a slow or absent InfluxDB never delays an alarm (appended before the
   rules run, so the spool's lock is never taken under the alert service's: docs/reliability.md,
   "Lock order"; a spool that refuses the batch has then not run the rules on it either);
3. evaluate the alert rules on what is new;
4. commit (``IngestUnitOfWork.commit``), in ONE database transaction, the incidents and
   their notices, the dead letters and the sequence state of the devices whose messages
   changed incidents; only then do memory and the live screens see the changes. Other
   devices' health and sequence state are flushed every ten seconds or so
   (``flush_device_states``): for them a redelivery after a crash can at worst re-spool
   points the store already has, which it writes idempotently.

**Alarms never wait on telemetry.** When the spool cannot take points (at its bound, its
disk at the alarm reserve of ``foundation/disk_guard.py``, or a write that failed), telemetry is
what degrades, by ``TelemetryOverflow``: ``hold`` leaves the batch's telemetry messages
out (not judged, not acknowledged: ``TelemetryHeld``, and the broker keeps them for the
persistent session) while its events are committed as usual; ``drop`` acknowledges them and
counts the points lost. A batch of the alarm lane never holds: its points are dropped and
counted, its events committed. Dead letters are bulk too: past the disk reserve they are
counted, not stored.

A crash anywhere before 4 redelivers the batch and it is judged afresh (the spool may then
hold its points twice: every store writes a point idempotently). A crash after 4 but before
the acknowledgement redelivers messages that the sequence state now recognises as seen:
each is evaluated once.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace
from enum import StrEnum
from operator import attrgetter

import numpy as np
from sqlalchemy import Connection, Engine

from alerts.service import AlertService
from devices.messages import DeviceKind, Online
from devices.reading import Reading
from devices.registry import DeviceBatch, DeviceRecord, DeviceRegistry
from ingest.dead_letters import DeadLetter, DeadLetterStore
from devices.topics import MessageClass, TopicAddress
from ingest.decode import DecodeLimits, decode_message
from ingest.hygiene import ClockSkew, check_clock
from ingest.rate_limit import RATE_LIMITED, DeviceRateLimits
from devices.sequence import Verdict
from ingest.spool import Spool, SpoolFull
from ingest.unit_of_work import IngestUnitOfWork
from foundation.disk_guard import DiskGuard
from foundation.errors import PayloadError, RejectedMessage, UnregisteredDevice, WanliError
from foundation.log_limit import LogLimiter, log_held_back, log_limited
from foundation.metrics import LatencyWindow
from foundation.service_clock import ClockMs, wall_ms

log = logging.getLogger(__name__)


_sent_ms = attrgetter("message.ts")  # a reading's device time, in C over a batch
_kind = attrgetter("kind")


class TelemetryOverflow(StrEnum):
    """What happens to telemetry while the spool cannot take it (alarms are never held)."""

    HOLD = "hold"  # not acknowledged: the broker keeps it for the persistent session until the spool takes it
    DROP = "drop"  # acknowledged and counted as lost (telemetry_dropped_points)


class TelemetryHeld(WanliError):
    """The batch's events are committed; its telemetry was left out and must not be acknowledged."""

    def __init__(self, held: int, why: str) -> None:
        super().__init__(f"{held} telemetry messages held back: {why}")
        self.held, self.why = held, why


class SpoolRefused(WanliError):
    """The spool failed a write the batch needed: nothing was committed; try the batch again at once
    (the spool is now known to refuse, so the retry commits the events without it)."""


@dataclass(frozen=True, slots=True)
class RawMessage:
    topic: str
    payload: bytes
    received_ms: int
    qos: int = 0
    mid: int = 0


@dataclass
class IngestCounters:
    received: int = 0
    readings: int = 0
    spooled_points: int = 0
    incidents_changed: int = 0
    duplicates: int = 0
    seq_resets: int = 0
    seq_jumps: int = 0
    flagged: int = 0  # messages let through with a hygiene flag (events with a wrong clock or sequence)
    flags: Counter[str] = field(default_factory=Counter)  # by reason: clock, seq_backwards, seq_jump
    telemetry_held: int = 0  # messages left unacknowledged while the spool refused (counted each time)
    telemetry_dropped_points: int = 0  # points not kept while the spool refused (policy drop, the alarm lane)
    dead_letters_unstored: int = 0  # dead letters counted but not stored (disk at the reserve, a device past its rate)
    batches: int = 0
    first_received_ms: int | None = None  # when this process received its first message (benchmarks time from here)
    rejected: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class BatchResult:
    readings: int
    rejected: int
    duplicates: int
    spooled_points: int
    incidents_changed: int


class IngestPipeline:
    def __init__(
        self,
        kinds: Mapping[str, DeviceKind],
        engine: Engine,
        registry: DeviceRegistry,
        spool: Spool,
        dead_letters: DeadLetterStore,
        alerts: AlertService,
        limits: DecodeLimits = DecodeLimits(),
        clock_ms: ClockMs = wall_ms,
        on_spooled: Callable[[], None] = lambda: None,
        *,
        disk_guard: DiskGuard | None = None,
        overflow: TelemetryOverflow = TelemetryOverflow.HOLD,
        clock_skew: ClockSkew | None = None,
        rate_limits: DeviceRateLimits | None = None,
        log_limiter: LogLimiter | None = None,
    ) -> None:
        self._kinds = kinds
        self._engine = engine
        self._registry = registry
        self._spool = spool
        self._dead_letters = dead_letters
        self._alerts = alerts
        self._limits = limits
        self._clock_ms = clock_ms
        self._on_spooled = on_spooled
        self._disk_guard = disk_guard
        self.overflow = overflow
        self.clock_skew = clock_skew if clock_skew is not None else ClockSkew()
        self._spool_failed_until_ms = 0
        self.spool_refusal = ""  # why the spool refuses telemetry now ("" while it takes it)
        self._letters_by_device: Counter[str] = Counter()  # since the health check last took them
        self._letters_lock = threading.Lock()  # the health probe's thread takes them while ingest counts (a leaf)
        # One noisy device cannot take the disk or the log: its telemetry past a rate is refused (events never),
        # its dead letters past a rate are sampled and counted (ingest/rate_limit.py); repeated log lines summed.
        self.rate_limits = rate_limits if rate_limits is not None else DeviceRateLimits()
        self._log_limiter = log_limiter if log_limiter is not None else LogLimiter()
        self._swept_ms = 0
        self.counters = IngestCounters()
        # Several instances (foundation/leases.py): the ingest role's fence, checked in every batch's transaction
        # that writes incidents or device states; a holder that lost the role (it froze) writes nothing.
        self.fences: list[Callable[[Connection], None]] = []
        # device clock → incident committed and points spooled: what an alarm waits before the screens see it
        self.publish_to_committed = LatencyWindow()

    def process(self, batch: Sequence[RawMessage], *, hold_telemetry: bool = True) -> BatchResult:
        """Process a batch. Raises ``TelemetryHeld`` (events committed, do not acknowledge), ``SpoolRefused``
        (nothing committed, retry now) or a transient error of the database (nothing committed, retry later).

        ``hold_telemetry``: False on the alarm lane, whose batches are never held back.
        """
        now_ms = self._clock_ms()
        refusal = self._spool_refusing(now_ms)
        hold = bool(refusal) and hold_telemetry and self.overflow is TelemetryOverflow.HOLD
        # the devices' states, the incidents, the dead letters and the rate limits' charges: all kept, or all
        # taken back (ingest/unit_of_work.py)
        with IngestUnitOfWork(self._engine, self._registry, self._alerts, self._dead_letters, self.rate_limits,
                              now_ms, self.fences) as uow:
            readings, letters, duplicates, resets, held = self._admit(batch, uow.devices, hold, now_ms)
            uow.dead_letters(*self._letters_to_keep(letters, now_ms))
            # spooled before the rules run: the spool's lock is never taken under the alert service's
            points, dropped = self._spool_points(readings, refusal, now_ms)
            uow.evaluate(readings)
            changed = uow.commit()
        if points and not refusal:
            self._on_spooled()
        if readings:
            done_ms = self._clock_ms()
            sent = np.fromiter(map(_sent_ms, readings), np.int64, len(readings))
            self.publish_to_committed.add(done_ms - sent)

        c = self.counters
        if c.first_received_ms is None and batch:
            c.first_received_ms = batch[0].received_ms
        c.batches += 1
        c.received += len(batch) - held
        c.readings += len(readings)
        c.spooled_points += points - dropped
        c.telemetry_dropped_points += dropped
        c.telemetry_held += held
        c.dead_letters_unstored += len(letters) - changed.dead_letters
        c.incidents_changed += len(changed.incidents)
        c.duplicates += duplicates
        c.seq_resets += resets
        c.rejected.update(d.reason for d in letters)
        if letters:
            with self._letters_lock:
                self._letters_by_device.update(d.device_id for d in letters)
        c.by_kind.update(map(_kind, readings))
        for d in letters:  # once per device and reason, then a line per interval saying how many were not logged
            log_limited(log, self._log_limiter, (d.device_id, d.reason), now_ms, logging.WARNING,
                        "rejected message topic=%s device=%s reason=%s: %s", d.topic, d.device_id, d.reason, d.detail)
        if now_ms - self._swept_ms >= 60_000:
            self._swept_ms = now_ms
            self.rate_limits.sweep(now_ms)
            log_held_back(log, self._log_limiter, now_ms)
        if dropped:
            log.warning("telemetry points dropped=%d while the spool refuses: %s", dropped, refusal)
        if held:
            raise TelemetryHeld(held, refusal)
        return BatchResult(len(readings), len(letters), duplicates, points - dropped, len(changed.incidents))

    def _letters_to_keep(self, letters: Sequence[DeadLetter], now_ms: int) -> tuple[list[DeadLetter], Counter[str]]:
        """The dead letters to store, and the ones only counted by reason (a device past its letters' rate,
        sampled; every one while the disk is at the alarm reserve)."""
        stored = [d for d in letters if self.rate_limits.letter(d.device_id, d.reason, now_ms)]
        unstored = self.rate_limits.take_unstored()
        if stored and self._disk_guard is not None and self._disk_guard.refuse_bulk():
            unstored.update(d.reason for d in stored)  # the disk's reserve is for alarms: counted only
            stored = []
        return stored, unstored

    def _spool_points(self, readings: Sequence[Reading], refusal: str, now_ms: int) -> tuple[int, int]:
        """Append the readings' points to the spool (fsynced) unless it refuses; return (points, dropped).
        Raises ``SpoolRefused`` when the append fails (nothing is committed: the batch is tried again)."""
        row = self._spool.row_of(readings)  # the points, as the spool keeps them (line protocol for InfluxDB)
        points = row.points
        if points and not refusal:
            try:
                self._spool.append_row(row, now_ms)
            except (SpoolFull, OSError, sqlite3.Error) as exc:
                self._spool_failed(exc, now_ms)
                raise SpoolRefused(str(exc)) from exc
            return points, 0
        return points, points  # held telemetry has none here: these are events' (and, with drop, all)

    def take_letters_by_device(self) -> Counter[str]:
        """Dead letters per device since the last call (the system health check's flood detector)."""
        with self._letters_lock:
            taken, self._letters_by_device = self._letters_by_device, Counter()
        return taken

    # -- the spool's refusal ------------------------------------------------------------

    SPOOL_RETRY_MS = 2_000  # after a failed append, the spool is asked again this much later

    def _spool_refusing(self, now_ms: int) -> str:
        """Why the spool cannot take telemetry now, or "" (it can)."""
        why = ""
        if now_ms < self._spool_failed_until_ms:
            why = self.spool_refusal or "the spool's last write failed"
        elif (state := self._spool.state()).points >= state.limit_points:
            why = f"the telemetry spool is at its bound ({state.points} of {state.limit_points} points)"
        elif self._disk_guard is not None and not self._disk_guard.bulk_allowed():
            why = (f"a data directory's disk is at the alarm reserve "
                   f"({self._disk_guard.reserve_bytes // 1_000_000} MB kept for incidents)")
        self.spool_refusal = why
        return why

    def _spool_failed(self, exc: Exception, now_ms: int) -> None:
        self._spool_failed_until_ms = now_ms + self.SPOOL_RETRY_MS
        self.spool_refusal = f"the spool could not write: {type(exc).__name__}: {exc}"
        log.error("telemetry spool refused a batch (%s); events go on without it", self.spool_refusal)

    # -- admission ----------------------------------------------------------------------

    def _admit(self, batch: Sequence[RawMessage], devices: DeviceBatch, hold_telemetry: bool,
               now_ms: int) -> tuple[list[Reading], list[DeadLetter], int, int, int]:
        readings: list[Reading] = []
        letters: list[DeadLetter] = []
        skew = self.clock_skew
        offset_ms = skew.offset_ms  # read once: the batch's clocks are observed after it (``observe_many``)
        clocks: list[tuple[str, int, int, bool]] = []
        try:
            duplicates, resets, held = self._admit_each(batch, devices, hold_telemetry, offset_ms, clocks, readings,
                                                        letters)
        finally:
            skew.observe_many(clocks)
        return readings, letters, duplicates, resets, held

    def _admit_each(self, batch: Sequence[RawMessage], devices: DeviceBatch, hold_telemetry: bool, offset_ms: int,
                    clocks: list[tuple[str, int, int, bool]], readings: list[Reading],
                    letters: list[DeadLetter]) -> tuple[int, int, int]:
        """Each message of the batch judged in order: its reading appended to ``readings`` or its dead letter to
        ``letters``, what it said of its device's clock to ``clocks``; returns (duplicates, resets, held)."""
        duplicates = resets = held = 0
        limits = self.rate_limits
        check_registered = self._check_registered
        observe = clocks.append
        telemetry = MessageClass.TELEMETRY
        c = self.counters
        for raw in batch:
            topic = raw.topic
            msg_class = topic.rpartition("/")[2]
            if hold_telemetry and msg_class == "telemetry":
                held += 1  # left for the broker to deliver again once the spool takes telemetry
                continue
            try:
                # checked registered once valid; the registration travels on the reading (the rules' place from it)
                reading = decode_message(raw.topic, raw.payload, raw.received_ms, self._kinds, self._limits,
                                         check_registered)
                online = isinstance(reading.message, Online)
                if online or reading.msg_class is telemetry:
                    # stamped as sent (a last will is stamped when its connection opened; an event may be buffered)
                    observe((reading.device_id, reading.message.ts, raw.received_ms, online))
                judged = check_clock(reading, self._limits, offset_ms)
                if judged is not reading:  # an event let through with its clock flagged
                    c.flags["clock"] += 1
                reading = judged
                # By the device's own clock: a backlog the broker kept through an outage arrives in a burst
                # but was sent at the device's pace; a device that really sends too fast is refused.
                if not limits.admit(reading.device_id, msg_class, reading.message.ts, raw.received_ms):
                    # telemetry or status past the device's rate: counted under rate_limited, a sample kept
                    raise PayloadError(f"device {reading.device_id} sends faster than its limit "
                                       "(WANLI_INGEST_DEVICE_MESSAGES_PER_S)", topic=topic,
                                       device_id=reading.device_id, reason=RATE_LIMITED)
                verdict = devices.admit(reading)
                if verdict is Verdict.DUPLICATE:
                    duplicates += 1
                    continue
                if verdict is Verdict.BACKWARDS:
                    if reading.msg_class is not MessageClass.EVENT:
                        raise PayloadError(f"sequence number {reading.seq} is behind what device {reading.device_id} "
                                           "already sent (a replay, or a lost counter)",
                                           topic=raw.topic, device_id=reading.device_id, reason="seq_backwards")
                    reading = dc_replace(reading, flags=(*reading.flags, f"序号倒退（sequence number {reading.seq} "
                                                                        "went backwards）"))
                    c.flags["seq_backwards"] += 1
                elif verdict is Verdict.JUMP:
                    c.seq_jumps += 1
                    c.flags["seq_jump"] += 1
                    reading = dc_replace(reading, flags=(*reading.flags, f"序号跳变（sequence number jumped to "
                                                                        f"{reading.seq}）"))
                    log.warning("device=%s sequence number jumped to %d; its window stays", reading.device_id,
                                reading.seq)
                elif verdict is Verdict.RESET:
                    resets += 1
                    log.warning("device=%s restarted its sequence numbers at %d", reading.device_id, reading.seq)
                if reading.flags:
                    c.flagged += 1
                readings.append(reading)
            except RejectedMessage as exc:
                letters.append(DeadLetter(raw.received_ms, raw.topic, exc.device_id, exc.reason, exc.detail,
                                          raw.payload, len(raw.payload)))
        return duplicates, resets, held

    def _check_registered(self, reading: TopicAddress | Reading, topic: str) -> DeviceRecord:
        """Only active devices publishing as what they were registered as get through; the rest wait in quarantine.
        Returns the registration: the message's one registry lookup (``Reading.registration``)."""
        rec = self._registry.lookup(reading.device_id)  # memory, then the database before quarantining
        if rec is None:
            retired = self._registry.is_retired(reading.device_id)
            raise UnregisteredDevice(
                f"device {reading.device_id} is {'retired' if retired else 'not registered'} (quarantined)",
                topic=topic, device_id=reading.device_id, reason="retired_device" if retired else None)
        if rec.kind != reading.kind or rec.street_id != reading.street:
            raise UnregisteredDevice(
                f"device {reading.device_id} is registered as {rec.kind} in {rec.street_id}, "
                f"but published as {reading.kind} in {reading.street}",
                topic=topic, device_id=reading.device_id, reason="kind_mismatch")
        return rec

    def flush_device_states(self) -> int:
        """Write the devices' health and sequence state; not while the disk is at the alarm reserve (they
        stay in memory, dirty, and go at the first flush after space is freed)."""
        if self._disk_guard is not None and self._disk_guard.refuse_bulk():
            return 0
        return self._registry.flush_states(self.fences)

    def dead_letter(self, letter: DeadLetter) -> None:
        """Keep one message that could not be processed at all (the consumer's last resort)."""
        self._dead_letters.add_batch([letter])
        self.counters.received += 1
        self.counters.rejected[letter.reason] += 1
