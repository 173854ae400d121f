"""A dead-man timer shared by the rules that watch for silence (a station offline, no activity at home)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from alerts.rules.base import Place


class SilenceWatch:
    """A dead-man timer over a population of devices, in numpy arrays: who has been silent too long.

    ``seen`` records a sign of life; ``follow`` follows the registered population (a device that
    has never been seen counts from the first time the watch sees it registered, so a restart
    does not declare everyone silent); ``overdue`` names each device once per silence.

    The population is re-read at most every ``REFRESH_EVERY_MS``: reading it walks the whole
    registry, and silences are counted in minutes and hours, so a device registered a minute
    ago can wait a minute to be watched.
    """

    REFRESH_EVERY_MS = 60_000

    def __init__(self) -> None:
        self._next_refresh_ms: int | None = None
        self.ids: list[str] = []
        self._index: dict[str, int] = {}
        self.last_ms = np.empty(0, dtype=np.int64)
        self.never_seen = np.empty(0, dtype=bool)
        self._limit_ms = np.empty(0, dtype=np.int64)
        self._raised = np.empty(0, dtype=bool)
        self._early: dict[str, int] = {}  # seen before the watch knew the device was registered

    def seen(self, device_id: str, at_ms: int) -> None:
        i = self._index.get(device_id)
        if i is None:
            self._early[device_id] = max(at_ms, self._early.get(device_id, at_ms))
            return
        if at_ms > self.last_ms[i]:
            self.last_ms[i] = at_ms
        self.never_seen[i] = False
        self._raised[i] = False

    def follow(self, population: Callable[[], Sequence[Place]], limit_ms: Callable[[str], float], now_ms: int) -> None:
        if self._next_refresh_ms is not None and now_ms < self._next_refresh_ms:
            return
        self._next_refresh_ms = now_ms + self.REFRESH_EVERY_MS
        ids = [p.device_id for p in population()]
        if ids != self.ids:
            last = np.full(len(ids), now_ms, dtype=np.int64)
            never = np.ones(len(ids), dtype=bool)
            raised = np.zeros(len(ids), dtype=bool)
            for j, device_id in enumerate(ids):
                i = self._index.get(device_id)
                if i is not None:
                    last[j], never[j], raised[j] = self.last_ms[i], self.never_seen[i], self._raised[i]
                elif device_id in self._early:
                    last[j], never[j] = self._early[device_id], False
            self.ids, self._index = ids, {d: j for j, d in enumerate(ids)}
            self.last_ms, self.never_seen, self._raised = last, never, raised
            self._limit_ms = np.array([limit_ms(d) for d in ids], dtype=np.int64)
        self._early.clear()

    def overdue(self, now_ms: int) -> npt.NDArray[np.intp]:
        """Indices of the devices silent for longer than their limit, each once until it is seen again."""
        late = (now_ms - self.last_ms > self._limit_ms) & ~self._raised
        self._raised |= late
        return np.flatnonzero(late)
