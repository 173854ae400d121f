"""One batch of raw MQTT messages through decode → registry → alerts → telemetry → dead letters.

No MQTT here: the consumer hands in batches and acknowledges them to the broker only after
``process`` returns, so a batch that raises is redelivered rather than lost.

Order matters for "100-1=0": alarms reach the alert engine before telemetry is written, so
a slow or absent InfluxDB delays the time series, never an incident.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from alerts.service import AlertService
from devices.messages import DeviceKind
from devices.reading import Reading
from devices.registry import DeviceRegistry
from ingest.dead_letters import DeadLetter, DeadLetterStore
from ingest.decode import DecodeLimits, decode_message
from ingest.telemetry import TelemetryStore
from wanli.errors import RejectedMessage, StoreUnavailable, UnregisteredDevice

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
    stored_points: int = 0
    readings: int = 0
    incidents_changed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    store_retries: int = 0


@dataclass(frozen=True, slots=True)
class BatchResult:
    readings: int
    rejected: int
    stored_points: int
    incidents_changed: int


class IngestPipeline:
    def __init__(
        self,
        kinds: Mapping[str, DeviceKind],
        registry: DeviceRegistry,
        telemetry: TelemetryStore,
        dead_letters: DeadLetterStore,
        alerts: AlertService,
        limits: DecodeLimits = DecodeLimits(),
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._kinds = kinds
        self._registry = registry
        self._telemetry = telemetry
        self._dead_letters = dead_letters
        self._alerts = alerts
        self._limits = limits
        self._clock_ms = clock_ms
        self._sleep = sleep
        self.counters = IngestCounters()

    def process(self, batch: Sequence[RawMessage]) -> BatchResult:
        readings: list[Reading] = []
        letters: list[DeadLetter] = []
        for raw in batch:
            try:
                reading = decode_message(raw.topic, raw.payload, raw.received_ms, self._kinds, self._limits)
                self._check_registered(reading, raw.topic)
                readings.append(reading)
            except RejectedMessage as exc:
                letters.append(DeadLetter(raw.received_ms, raw.topic, exc.device_id, exc.reason, exc.detail,
                                          raw.payload, len(raw.payload)))
        changes = self._alerts.handle_batch(readings, self._clock_ms()) if readings else []
        stored = self._write_telemetry(readings)
        self._dead_letters.add_batch(letters)
        self._registry.observe_batch(readings)

        c = self.counters
        c.received += len(batch)
        c.readings += len(readings)
        c.stored_points += stored
        c.incidents_changed += len(changes)
        c.rejected.update(d.reason for d in letters)
        c.by_kind.update(r.kind for r in readings)
        for d in letters:
            log.warning("rejected message topic=%s device=%s reason=%s: %s", d.topic, d.device_id, d.reason, d.detail)
        return BatchResult(len(readings), len(letters), stored, len(changes))

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

    def dead_letter(self, letter: DeadLetter) -> None:
        """Keep one message that could not be processed at all (the consumer's last resort)."""
        self._dead_letters.add_batch([letter])
        self.counters.rejected[letter.reason] += 1

    def _write_telemetry(self, readings: Sequence[Reading]) -> int:
        """Write, retrying with backoff while the store is down; the batch stays unacknowledged meanwhile."""
        if not readings:
            return 0
        delay = 0.5
        while True:
            try:
                return self._telemetry.write_batch(readings)
            except StoreUnavailable as exc:
                self.counters.store_retries += 1
                log.error("telemetry store %s unavailable, retrying in %.1f s: %s", self._telemetry.name, delay, exc.detail)
                self._sleep(delay)
                delay = min(delay * 2, 30.0)
