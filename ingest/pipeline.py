"""One batch of raw MQTT messages through decode → registry → sequence check → alerts → spool → commit.

No MQTT here: the consumer hands in batches and acknowledges them to the broker only after
``process`` returns, so a batch that raises is redelivered rather than lost. For each batch:

1. decode and validate every message; check its device is registered (else quarantine) and
   judge its sequence number (a duplicate is dropped and counted, one going backwards is
   dead-lettered);
2. evaluate the alert rules on what is new;
3. append its time-series points to the durable spool (fsynced), which a drainer moves to
   the telemetry store: a slow or absent InfluxDB never delays an alarm;
4. commit, in ONE database transaction, the incidents, the dead letters and the sequence
   state of the devices whose messages changed incidents; only then do memory and the live
   screens see the changes. Other devices' health and sequence state are flushed every ten
   seconds or so (``flush_device_states``): for them a redelivery after a crash can at worst
   re-spool points the store already has, which it writes idempotently.

A crash anywhere before 4 redelivers the batch and it is judged afresh (the spool may then
hold its points twice: every store writes a point idempotently). A crash after 4 but before
the acknowledgement redelivers messages that the sequence state now recognises as seen:
each is evaluated once, and its points are already spooled.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Engine

from alerts.service import AlertService
from devices.messages import DeviceKind
from devices.reading import Reading
from devices.registry import DeviceBatch, DeviceRegistry
from ingest.dead_letters import DeadLetter, DeadLetterStore
from ingest.decode import DecodeLimits, decode_message
from ingest.points import points_of_all
from ingest.sequence import Verdict
from ingest.spool import Spool
from wanli.errors import PayloadError, RejectedMessage, UnregisteredDevice
from wanli.metrics import LatencyWindow

log = logging.getLogger(__name__)


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
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        on_spooled: Callable[[], None] = lambda: None,
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
        self.counters = IngestCounters()
        # device clock → incident committed and points spooled: what an alarm waits before the screens see it
        self.publish_to_committed = LatencyWindow()

    def process(self, batch: Sequence[RawMessage]) -> BatchResult:
        now_ms = self._clock_ms()
        with self._registry.batch() as devices, self._alerts.batch(now_ms) as alerts:
            readings, letters, duplicates, resets = self._admit(batch, devices)
            alerts.evaluate(readings)
            points = points_of_all(readings)
            self._spool.append(points, now_ms)  # raises SpoolFull: nothing is acknowledged, the broker keeps it
            if alerts.pending or letters:
                with self._engine.begin() as conn:
                    alerts.write(conn)
                    devices.write(conn, {i.device_id for i in alerts.pending.values()})
                    self._dead_letters.add_batch(letters, conn)
            devices.committed = alerts.committed = True
        if points:
            self._on_spooled()
        if readings:
            done_ms = self._clock_ms()
            sent = np.fromiter((r.message.ts for r in readings), np.int64, len(readings))
            self.publish_to_committed.add(done_ms - sent)

        c = self.counters
        if c.first_received_ms is None and batch:
            c.first_received_ms = batch[0].received_ms
        c.batches += 1
        c.received += len(batch)
        c.readings += len(readings)
        c.spooled_points += len(points)
        c.incidents_changed += len(alerts.pending)
        c.duplicates += duplicates
        c.seq_resets += resets
        c.rejected.update(d.reason for d in letters)
        c.by_kind.update(r.kind for r in readings)
        for d in letters:
            log.warning("rejected message topic=%s device=%s reason=%s: %s", d.topic, d.device_id, d.reason, d.detail)
        return BatchResult(len(readings), len(letters), duplicates, len(points), len(alerts.pending))

    def _admit(self, batch: Sequence[RawMessage], devices: DeviceBatch) -> tuple[list[Reading], list[DeadLetter], int, int]:
        readings: list[Reading] = []
        letters: list[DeadLetter] = []
        duplicates = resets = 0
        for raw in batch:
            try:
                reading = decode_message(raw.topic, raw.payload, raw.received_ms, self._kinds, self._limits)
                self._check_registered(reading, raw.topic)
                verdict = devices.admit(reading)
                if verdict is Verdict.DUPLICATE:
                    duplicates += 1
                    continue
                if verdict is Verdict.BACKWARDS:
                    raise PayloadError(f"sequence number {reading.seq} is behind what device {reading.device_id} "
                                       "already sent (a replay, or a lost counter)",
                                       topic=raw.topic, device_id=reading.device_id, reason="seq_backwards")
                if verdict is Verdict.RESET:
                    resets += 1
                    log.warning("device=%s restarted its sequence numbers at %d", reading.device_id, reading.seq)
                readings.append(reading)
            except RejectedMessage as exc:
                letters.append(DeadLetter(raw.received_ms, raw.topic, exc.device_id, exc.reason, exc.detail,
                                          raw.payload, len(raw.payload)))
        return readings, letters, duplicates, resets

    def _check_registered(self, reading: Reading, topic: str) -> None:
        """Only active devices publishing as what they were registered as get through; the rest wait in quarantine."""
        rec = self._registry.find(reading.device_id)
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

    def flush_device_states(self) -> int:
        return self._registry.flush_states()

    def dead_letter(self, letter: DeadLetter) -> None:
        """Keep one message that could not be processed at all (the consumer's last resort)."""
        self._dead_letters.add_batch([letter])
        self.counters.received += 1
        self.counters.rejected[letter.reason] += 1
