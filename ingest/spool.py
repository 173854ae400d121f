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
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.points import TelemetryPoint, pack, unpack
from ingest.telemetry import TelemetryStore
from wanli.background import Backoff, WakeableLoop
from wanli.errors import StoreUnavailable, WanliError
from wanli.metrics import LatencyWindow
from wanli.service_clock import wall_ms

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


class Spool:
    def __init__(self, path: Path, max_points: int = 20_000_000, warn_fraction: float = 0.8) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # an acknowledged message must survive a power cut too
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, created_ms INTEGER NOT NULL,"
            " points INTEGER NOT NULL, body BLOB NOT NULL)"
        )
        self._lock = threading.Lock()
        self.max_points = max_points
        self.warn_fraction = warn_fraction
        row = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(points), 0), MIN(created_ms) FROM spool").fetchone()
        self._batches, self._points, self._oldest_ms = row[0], row[1], row[2]
        self.appended_points = 0
        self.drained_points = 0

    def append(self, points: list[TelemetryPoint], now_ms: int) -> None:
        """Durably keep a batch of points, or raise ``SpoolFull``."""
        if not points:
            return
        with self._lock:
            if self._points + len(points) > self.max_points:
                raise SpoolFull(self._points, self.max_points)
            self._conn.execute("INSERT INTO spool (created_ms, points, body) VALUES (?, ?, ?)",
                               (now_ms, len(points), pack(points)))
            self._batches += 1
            self._points += len(points)
            self.appended_points += len(points)
            if self._oldest_ms is None:
                self._oldest_ms = now_ms

    def peek(self, max_points: int) -> tuple[int, list[TelemetryPoint]]:
        """The oldest batches, up to about ``max_points`` (at least one batch); returns (last id, points)."""
        with self._lock:
            rows = self._conn.execute("SELECT id, points, body FROM spool ORDER BY id LIMIT 64").fetchall()
        last_id, out = 0, []
        for row_id, count, body in rows:
            if out and len(out) + count > max_points:
                break
            out.extend(unpack(body))
            last_id = row_id
        return last_id, out

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
        self.store_failures = 0
        self.store_up = True
        self.last_error = ""
        self.publish_to_stored = LatencyWindow()  # device clock → the store acknowledged the point

    def drain_once(self) -> int:
        """Move one round of points; return how many (0 when empty). Raises ``StoreUnavailable``."""
        last_id, points = self._spool.peek(self._batch_points)
        if not points:
            return 0
        self._store.write_points(points)
        self._spool.release(last_id)
        stored_ms = wall_ms()
        self.publish_to_stored.add(stored_ms - np.fromiter((p.ts_ms for p in points), np.int64, len(points)))
        return len(points)

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
