"""The telemetry spool: a durable, bounded, ordered queue on local disk between ingest and the store.

Every batch of points is appended here (one SQLite transaction, fsynced) before the batch's
messages are acknowledged to the broker; a drainer thread moves the points to the
telemetry store in order and deletes them once the store has them. So a slow or absent
InfluxDB never blocks alarms and never loses a point: the spool grows while it is away and
drains when it is back. Why SQLite: crash-safe appends and ordered reads are exactly what
it does well; a hand-made segment-file format would have to earn the same trust.

The spool is bounded. Past ``warn_fraction`` of the bound it says so (``near_full``) so
that an operator is told long before it fills; when full, ``append`` raises ``SpoolFull``
and ingest stops acknowledging (backpressure: the broker keeps the messages).

What a batch is kept as (its row's ``form``): for a store that takes InfluxDB line protocol
(``write_lines``: InfluxDB 1.x and 2.x, VictoriaMetrics) the batch's lines, built once at
append, with the points' device times beside them (for the latency window); else the points
as msgpack (the embedded SQLite store). A replay after an outage is then reading rows and
posting them in large requests: no decoding and re-encoding of every point in the drainer
(``wanli bench spool``, docs/benchmarks.md). Rows of either form are read by either kind of
store (a spool written before the form existed holds msgpack rows: they are encoded when
drained into InfluxDB; lines drained into a store that takes points are parsed back), so
neither a switch of store nor an upgrade over a full spool loses a point.

Lock order (docs/reliability.md, "Lock order"): the spool's lock is a leaf. Ingest appends
under the registry's lock only (before the rules run, never under the alert service's), the
drainer under none; nothing is asked for while it is held but the spool's own SQLite file.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devices.reading import Reading
from ingest.line_protocol import encode_bytes, encode_readings, parse_bytes
from ingest.points import TelemetryPoint, pack, points_of_all, unpack
from ingest.telemetry import LineProtocolStore, TelemetryStore
from foundation.background import Backoff, WakeableLoop
from foundation.errors import StoreUnavailable, WanliError
from foundation.metrics import LatencyWindow
from foundation.service_clock import wall_ms

log = logging.getLogger(__name__)


class SpoolFull(WanliError):
    def __init__(self, points: int, limit: int) -> None:
        super().__init__(f"telemetry spool full: {points} points waiting, limit {limit}")
        self.points, self.limit = points, limit


@dataclass(frozen=True, slots=True)
class SpoolState:
    batches: int
    points: int
    oldest_ms: int | None
    limit_points: int

    @property
    def fill(self) -> float:
        return self.points / self.limit_points if self.limit_points else 0.0


def device_times(points: Sequence[TelemetryPoint]) -> np.ndarray:
    """The points' device times (ms), as the latency window and a LINES row keep them."""
    return np.fromiter((p.ts_ms for p in points), np.int64, len(points))


POINTS, LINES = 0, 1  # a row's form: msgpack points, or line protocol (with its points' device times)


@dataclass(frozen=True, slots=True)
class SpoolRow:
    """A batch as the spool keeps it, built before the batch's transaction (``Spool.row_of``)."""

    points: int
    body: bytes
    form: int
    ts: bytes | None  # a LINES row's int64 device times, one a point


class Spool:
    def __init__(self, path: Path, max_points: int = 20_000_000, warn_fraction: float = 0.8, *,
                 keep_lines: bool = False) -> None:
        """``keep_lines``: keep batches as line protocol (the store takes it: ``write_lines``), else as points."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # an acknowledged message must survive a power cut too
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, created_ms INTEGER NOT NULL,"
            " points INTEGER NOT NULL, body BLOB NOT NULL)"
        )
        # A spool written before rows had a form holds msgpack rows only: they read as such (form 0).
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(spool)")}
        if "form" not in columns:
            self._conn.execute(f"ALTER TABLE spool ADD COLUMN form INTEGER NOT NULL DEFAULT {POINTS}")
        if "ts" not in columns:
            self._conn.execute("ALTER TABLE spool ADD COLUMN ts BLOB")  # int64 device times of a LINES row
        self._lock = threading.Lock()
        self.max_points = max_points
        self.warn_fraction = warn_fraction
        self.keep_lines = keep_lines
        row = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(points), 0), MIN(created_ms) FROM spool").fetchone()
        self._batches, self._points, self._oldest_ms = row[0], row[1], row[2]
        self.appended_points = 0
        self.drained_points = 0

    def row_of(self, readings: Sequence[Reading]) -> SpoolRow:
        """The readings' points as this spool keeps them (lines built straight from the readings)."""
        if self.keep_lines:
            body, times = encode_readings(readings)
            return SpoolRow(len(times), body, LINES, np.array(times, np.int64).tobytes())
        return self._row_of_points(points_of_all(readings))

    def _row_of_points(self, points: Sequence[TelemetryPoint]) -> SpoolRow:
        if self.keep_lines:
            return SpoolRow(len(points), encode_bytes(points), LINES, device_times(points).tobytes())
        return SpoolRow(len(points), pack(points), POINTS, None)

    def append(self, points: list[TelemetryPoint], now_ms: int) -> None:
        """Durably keep a batch of points, or raise ``SpoolFull``."""
        self.append_row(self._row_of_points(points), now_ms)

    def append_row(self, row: SpoolRow, now_ms: int) -> None:
        """Durably keep a batch (``row_of``), or raise ``SpoolFull``."""
        if not row.points:
            return
        with self._lock:
            if self._points + row.points > self.max_points:
                raise SpoolFull(self._points, self.max_points)
            self._conn.execute("INSERT INTO spool (created_ms, points, body, form, ts) VALUES (?, ?, ?, ?, ?)",
                               (now_ms, row.points, row.body, row.form, row.ts))
            self._batches += 1
            self._points += row.points
            self.appended_points += row.points
            if self._oldest_ms is None:
                self._oldest_ms = now_ms

    def _oldest_rows(self, max_points: int) -> list[tuple[int, int, bytes, int, bytes | None]]:
        """The oldest rows, up to about ``max_points`` (at least one row): (id, points, body, form, ts)."""
        with self._lock:
            heads = self._conn.execute("SELECT id, points FROM spool ORDER BY id LIMIT 4096").fetchall()
            if not heads:
                return []
            last, total = heads[0][0], 0
            for row_id, count in heads:
                if total and total + count > max_points:
                    break
                last, total = row_id, total + count
            return self._conn.execute("SELECT id, points, body, form, ts FROM spool WHERE id <= ? ORDER BY id",
                                      (last,)).fetchall()

    def peek(self, max_points: int) -> tuple[int, list[TelemetryPoint]]:
        """The oldest batches, up to about ``max_points`` (at least one batch); returns (last id, points)."""
        last_id, out = 0, []
        for row_id, _count, body, form, _ts in self._oldest_rows(max_points):
            out.extend(parse_bytes(body) if form == LINES else unpack(body))
            last_id = row_id
        return last_id, out

    def peek_lines(self, max_points: int) -> tuple[int, int, bytes, np.ndarray]:
        """The oldest batches as one line-protocol body: (last id, points, body, the points' device times)."""
        last_id, count, bodies, times = 0, 0, [], []
        for row_id, points, body, form, ts in self._oldest_rows(max_points):
            if form == LINES:
                bodies.append(body)
                times.append(np.frombuffer(ts, np.int64))
            else:  # a row of points (a spool from before the form, or from a store that took points)
                unpacked = unpack(body)
                bodies.append(encode_bytes(unpacked))
                times.append(device_times(unpacked))
            last_id, count = row_id, count + points
        return last_id, count, b"\n".join(bodies), (np.concatenate(times) if times else np.empty(0, np.int64))

    def release(self, up_to_id: int) -> None:
        """Forget every batch up to and including ``up_to_id``: the store has them."""
        with self._lock:
            released = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(points), 0) FROM spool WHERE id <= ?",
                                          (up_to_id,)).fetchone()
            self._conn.execute("DELETE FROM spool WHERE id <= ?", (up_to_id,))
            self._batches -= released[0]
            self._points -= released[1]
            self.drained_points += released[1]
            oldest = self._conn.execute("SELECT MIN(created_ms) FROM spool").fetchone()
            self._oldest_ms = oldest[0]

    def state(self) -> SpoolState:
        with self._lock:
            return SpoolState(self._batches, self._points, self._oldest_ms, self.max_points)

    @property
    def near_full(self) -> bool:
        return self.state().fill >= self.warn_fraction

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class SpoolDrainer(WakeableLoop):
    """A thread that moves spooled points to the store in order, retrying with backoff while it is away.

    ``wake()`` when new points were appended: it drains now rather than at the next poll.
    """

    def __init__(self, spool: Spool, store: TelemetryStore, *, batch_points: int = 5000) -> None:
        super().__init__("spool-drainer")
        self._spool, self._store = spool, store
        self._batch_points = batch_points
        self._line_store = store if isinstance(store, LineProtocolStore) else None
        self.store_failures = 0
        self.store_up = True
        self.last_error = ""
        self.publish_to_stored = LatencyWindow()  # device clock → the store acknowledged the point

    def drain_once(self) -> int:
        """Move one round of points; return how many (0 when empty). Raises ``StoreUnavailable``."""
        if self._line_store is not None:  # the spool's rows go as they are
            last_id, count, body, sent_ms = self._spool.peek_lines(self._batch_points)
            if not count:
                return 0
            self._line_store.write_lines(body, count)
        else:
            last_id, points = self._spool.peek(self._batch_points)
            if not points:
                return 0
            self._store.write_points(points)
            count, sent_ms = len(points), device_times(points)
        self._spool.release(last_id)
        self.publish_to_stored.add(wall_ms() - sent_ms)
        return count

    def _run(self) -> None:
        backoff = Backoff(0.2, 10.0)
        while not self._stop.is_set():
            try:
                moved = self.drain_once()
            except StoreUnavailable as exc:
                self.store_failures += 1
                if self.store_up:
                    log.error("telemetry store %s unavailable; spooling (%s)", self._store.name, exc.detail)
                self.store_up, self.last_error = False, exc.detail
                self._stop.wait(backoff.next_s())
                continue
            except Exception:  # a bug must not stop draining for good; the points stay spooled
                log.exception("spool drainer failed; retrying")
                self._stop.wait(1.0)
                continue
            if not self.store_up:
                log.warning("telemetry store %s is back; draining the spool", self._store.name)
            self.store_up = True
            backoff.reset()
            if moved == 0:
                self._pause(0.5)
