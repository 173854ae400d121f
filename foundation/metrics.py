"""Measurements: latency windows and the Prometheus exposition.

Latencies are recorded per batch as numpy arrays into fixed-size ring buffers (no
per-message Python work), and read as percentiles by ``/api/stats``, the benchmarks and
Prometheus. Counters already kept by ingest and the spool are read at scrape time by a
collector, so the hot path never touches a Prometheus object.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class LatencyWindow:
    """The last ``size`` latencies (milliseconds) of one stage, as a ring buffer."""

    def __init__(self, size: int = 200_000) -> None:
        self._buf = np.zeros(size, dtype=np.float64)
        self._next = 0
        self._filled = 0
        self._lock = threading.Lock()
        self.count = 0

    def add(self, values_ms: np.ndarray) -> None:
        n = len(values_ms)
        if n == 0:
            return
        size = len(self._buf)
        if n >= size:
            values_ms, n = values_ms[-size:], size
        with self._lock:
            end = self._next + n
            if end <= size:
                self._buf[self._next:end] = values_ms
            else:
                first = size - self._next
                self._buf[self._next:] = values_ms[:first]
                self._buf[: n - first] = values_ms[first:]
            self._next = end % size
            self._filled = min(size, self._filled + n)
            self.count += n

    def percentiles(self, qs: tuple[float, ...] = (50, 99), last: int | None = None) -> dict[str, float]:
        """Percentiles over the window, or over only the ``last`` latencies recorded."""
        with self._lock:
            if last is None or last >= self._filled:
                data = self._buf[: self._filled].copy()
            elif last <= self._next:
                data = self._buf[self._next - last: self._next].copy()
            else:
                data = np.concatenate((self._buf[len(self._buf) - (last - self._next):], self._buf[: self._next]))
        if data.size == 0:
            return {}
        return {f"p{q:g}": float(v) for q, v in zip(qs, np.percentile(data, qs), strict=True)}

    def reset(self) -> None:
        with self._lock:
            self._next = self._filled = 0
            self.count = 0


class WanliCollector(Collector):
    """Reads the service's counters and gauges when Prometheus scrapes."""

    def __init__(self, snapshot: Callable[[], dict[str, object]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self._snapshot()
        received = CounterMetricFamily("wanli_messages", "MQTT messages accepted by ingest, per device kind",
                                       labels=["kind"])
        for kind, n in s["by_kind"].items():  # type: ignore[attr-defined]
            received.add_metric([kind], n)
        yield received
        rejected = CounterMetricFamily("wanli_messages_rejected", "messages dead-lettered, per reason", labels=["reason"])
        for reason, n in s["rejected"].items():  # type: ignore[attr-defined]
            rejected.add_metric([reason], n)
        yield rejected
        for name, key, help_text in (
            ("wanli_messages_duplicate", "duplicates", "messages recognised as already seen and dropped"),
            ("wanli_sequence_resets", "seq_resets", "devices whose sequence numbers restarted near zero"),
            ("wanli_incident_changes", "incidents_changed", "incidents opened or updated by ingest"),
            ("wanli_spool_points_in", "spooled_points", "time-series points appended to the spool"),
            ("wanli_spool_points_out", "drained_points", "points moved from the spool to the telemetry store"),
            ("wanli_store_failures", "store_failures", "failed writes to the telemetry store"),
            ("wanli_ingest_receiver_restarts", "receiver_restarts", "times the MQTT receiver process died and was replaced"),
            ("wanli_telemetry_held", "telemetry_held", "telemetry messages left unacknowledged while the spool refused"),
            ("wanli_telemetry_dropped_points", "telemetry_dropped_points",
             "points not kept while the spool refused (policy drop, and events' own points)"),
            ("wanli_dead_letters_unstored", "dead_letters_unstored",
             "dead letters counted but not stored (the disk at the alarm reserve, a device over its bound)"),
            ("wanli_messages_flagged", "flagged", "messages let through with a hygiene flag (an event's clock or sequence)"),
            ("wanli_sequence_jumps", "seq_jumps", "sequence numbers far past (or behind) a device's window, taken and flagged"),
        ):
            yield CounterMetricFamily(name, help_text, value=s.get(key, 0))  # type: ignore[arg-type]
        for name, key, help_text in (
            ("wanli_spool_points", "spool_points", "points waiting in the spool"),
            ("wanli_spool_oldest_age_seconds", "spool_age_s", "age of the oldest point waiting in the spool"),
            ("wanli_spool_fill_ratio", "spool_fill",
             "how near the spool is to refusing: its points over its bound, or its disk's use over the room above the "
             "alarm reserve, whichever is nearer (a system incident at 0.8)"),
            ("wanli_ingest_backlog", "backlog", "messages received but not yet processed"),
            ("wanli_telemetry_store_up", "store_up", "1 while the telemetry store accepts writes"),
        ):
            yield GaugeMetricFamily(name, help_text, value=float(s[key]))  # type: ignore[arg-type]
        disks = GaugeMetricFamily("wanli_disk_fill_ratio", "how full the disk of each data directory is", labels=["path"])
        for d in s.get("disks", ()):  # type: ignore[attr-defined]
            disks.add_metric([d["path"]], d["fill"])
        yield disks
        faults = GaugeMetricFamily("wanli_system_faults", "faults of the service holding now (1 each)",
                                   labels=["condition", "impairs_alarms"])
        for f in s.get("faults", ()):  # type: ignore[attr-defined]
            faults.add_metric([f["condition"], str(f["impairs_alarms"]).lower()], 1)
        yield faults
        roles = s.get("roles") or {}
        if roles:
            held = GaugeMetricFamily("wanli_role_held", "1 for each role this instance holds now, 0 for the others it "
                                     "may take (foundation/leases.py)", labels=["role", "instance"])
            for role in roles.get("may_take", ()):  # type: ignore[union-attr]
                held.add_metric([role, roles["instance"]], 1 if role in roles["held"] else 0)  # type: ignore[index]
            yield held
        growth = GaugeMetricFamily("wanli_disk_bytes_per_day", "disk growth by data class: rows written over the last"
                                   " day times bytes a stored row takes (wanli/data_lifecycle.py)", labels=["data_class"])
        for data_class, per_day in s.get("disk_bytes_per_day", {}).items():  # type: ignore[attr-defined]
            growth.add_metric([data_class], per_day)
        yield growth
        latency = GaugeMetricFamily("wanli_latency_ms", "latency percentiles over the last 200,000 messages",
                                    labels=["stage", "quantile"])
        for stage, pcts in s["latency"].items():  # type: ignore[attr-defined]
            for q, v in pcts.items():
                latency.add_metric([stage, q], v)
        yield latency


class AccessCounters:
    """Refusals by the access rules and the login throttle, counted per reason (read at scrape time)."""

    REFUSED = "wanli_access_refused"  # a credential refused something outside what it serves
    THROTTLED = "wanli_login_throttled"  # a login slowed down

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, family: str, reason: str, n: int = 1) -> None:
        with self._lock:
            self._counts[(family, reason)] = self._counts.get((family, reason), 0) + n

    def get(self, family: str, reason: str) -> int:
        with self._lock:
            return self._counts.get((family, reason), 0)

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)


class AccessCollector(Collector):
    """``wanli_access_refused_total{reason}`` and ``wanli_login_throttled_total{scope,event}`` from the counters."""

    def __init__(self, counters: AccessCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        counts = self._counters.snapshot()
        refused = CounterMetricFamily(AccessCounters.REFUSED, "requests refused because the credential does not "
                                      "serve what they touch (station binding, CSRF, forced password reset)",
                                      labels=["reason"])
        throttled = CounterMetricFamily(AccessCounters.THROTTLED, "login attempts slowed down: 'delayed' when a wrong "
                                        "password starts or lengthens a wait, 'refused' when an attempt came too soon",
                                        labels=["scope", "event"])
        for (family, reason), n in sorted(counts.items()):
            if family == AccessCounters.REFUSED:
                refused.add_metric([reason], n)
            elif family == AccessCounters.THROTTLED:
                scope, _, event = reason.partition(":")
                throttled.add_metric([scope, event], n)
        yield refused
        yield throttled
