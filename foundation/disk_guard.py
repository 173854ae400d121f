"""The disk guard: bulk writes stop before alarm writes when a data directory's disk nears full.

Everything the service writes shares a few disks: the database (incidents, their audit, the
devices), the telemetry spool, dead letters, the embedded telemetry store. If any of them
fills a disk, the next alarm's incident cannot be committed. So the disk of every data
directory keeps a **reserve** for alarm writes: once its free space falls below
``reserve_bytes``, the bulk writers (telemetry into the spool, dead letters, the periodic
device-state flush) stop and only count what they did not write, while incidents and their
audit go on using the reserve. Above ``alert_fill`` of a disk, the service raises a system
incident (``alerts/system_faults.py``) long before the reserve is reached.

``statvfs`` is a parameter, so tests give the guard a disk of any size; the real one is
``os.statvfs``, a few microseconds, asked at most once per ``cache_ms`` per directory.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from foundation.service_clock import ClockMs

StatVfs = Callable[[str], os.statvfs_result]


@dataclass(frozen=True, slots=True)
class DiskState:
    """One data directory's disk as last measured."""

    path: str
    total_bytes: int
    free_bytes: int  # what an unprivileged writer may still use (f_bavail)
    reserve_bytes: int

    @property
    def fill(self) -> float:
        """How full the disk is, 0..1 (what ``df`` says)."""
        return 1.0 - self.free_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def fill_before_reserve(self) -> float:
        """How much of what bulk writers may use is used, 0..1: 1.0 means they have stopped."""
        usable = self.total_bytes - self.reserve_bytes
        if usable <= 0:
            return 1.0
        return min(1.0, max(0.0, (self.total_bytes - self.free_bytes) / usable))

    @property
    def bulk_allowed(self) -> bool:
        return self.free_bytes > self.reserve_bytes


class DiskGuard:
    """Watches the disks of the service's data directories."""

    def __init__(self, paths: Iterable[Path | str], reserve_bytes: int, alert_fill: float = 0.9,
                 statvfs: StatVfs = os.statvfs, cache_ms: int = 1000,
                 clock_ms: ClockMs = lambda: time.monotonic_ns() // 1_000_000) -> None:
        self._paths = sorted({str(_existing(Path(p))) for p in paths})
        self.reserve_bytes = reserve_bytes
        self.alert_fill = alert_fill
        self._statvfs = statvfs
        self._cache_ms = cache_ms
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._measured_ms: int | None = None
        self._states: list[DiskState] = []
        self.refused_bulk_writes = 0  # bulk writes skipped for the reserve

    def states(self) -> list[DiskState]:
        """Every watched directory's disk, measured at most ``cache_ms`` ago."""
        now = self._clock_ms()
        with self._lock:
            if self._measured_ms is None or now - self._measured_ms >= self._cache_ms:
                self._states = self._measure()
                self._measured_ms = now
            return list(self._states)

    def _measure(self) -> list[DiskState]:
        out: list[DiskState] = []
        for path in self._paths:
            try:
                st = self._statvfs(path)
            except OSError:
                continue  # a directory that went away is not a disk that filled
            out.append(DiskState(path, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize, self.reserve_bytes))
        return out

    def bulk_allowed(self) -> bool:
        """Whether bulk writers may write now: every watched disk still has more than the reserve free."""
        return all(s.bulk_allowed for s in self.states())

    def refuse_bulk(self) -> bool:
        """True (and counted) when a bulk write must be skipped for the reserve."""
        if self.bulk_allowed():
            return False
        self.refused_bulk_writes += 1
        return True

    def fill_of(self, path: Path | str) -> DiskState | None:
        """The state of the disk a path is on: the watched directory that holds it (the longest match)."""
        target = str(_existing(Path(path)))
        holding = [s for s in self.states() if target == s.path or target.startswith(s.path.rstrip("/") + "/")]
        return max(holding, key=lambda s: len(s.path)) if holding else None


def _existing(path: Path) -> Path:
    """The path itself, or its nearest existing parent (a data file not yet made)."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
