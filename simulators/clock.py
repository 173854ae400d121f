"""Simulated time: a clock that can run faster than real time and jump ahead.

Every simulated device stamps its messages (``ts``) with this clock, and a service started
for a scenario reads the *same* clock (``running_in_thread(settings, clock.now_ms)``), so
device timestamps, ingest's ``ts_future``/``ts_past`` checks, the rules' windows and
silence timers, and escalation deadlines all agree on what time it is:

- ``speed`` 60 makes one real second one simulated minute;
- ``advance(ms)`` jumps ahead at once (a quiet night, a day without activity).

Against a service that runs on the wall clock (an external ``wanli run``) the only honest
setting is ``speed=1`` with no jumps; ``shared`` says which of the two the clock is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from foundation.service_clock import wall_ms

SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")  # no daylight saving in China


class SimClock:
    """Milliseconds since the epoch, UTC, running ``speed`` times faster than ``monotonic``."""

    def __init__(self, start_ms: int | None = None, speed: float = 1.0, *, shared: bool = True,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._base_ms = wall_ms() if start_ms is None else start_ms
        self._base_mono = monotonic()
        self._speed = speed
        self.shared = shared  # the service reads this clock too: jumps and speed-ups are allowed

    @classmethod
    def wall(cls) -> SimClock:
        """The real clock (a service on the wall clock): speed 1, no jumps."""
        return cls(None, 1.0, shared=False)

    @property
    def speed(self) -> float:
        return self._speed

    def now_ms(self) -> int:
        with self._lock:
            return self._base_ms + int((self._monotonic() - self._base_mono) * 1000 * self._speed)

    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        if speed != 1 and not self.shared:
            raise ValueError("a clock the service does not share runs at speed 1")
        with self._lock:
            mono = self._monotonic()
            self._base_ms += int((mono - self._base_mono) * 1000 * self._speed)
            self._base_mono, self._speed = mono, speed

    def advance(self, ms: int) -> None:
        """Jump ahead ``ms`` milliseconds at once (never backwards)."""
        if ms < 0:
            raise ValueError("the clock never goes backwards")
        if ms and not self.shared:
            raise ValueError("cannot jump the clock of a service running on the wall clock")
        with self._lock:
            self._base_ms += ms

    def real_seconds(self, sim_ms: int) -> float:
        """How long ``sim_ms`` of simulated time takes in real time at the current speed."""
        return sim_ms / 1000 / self._speed


def shanghai(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(SHANGHAI)


def next_local_time_ms(after_ms: int, hour: int, minute: int = 0) -> int:
    """The first moment at or after ``after_ms`` when Shanghai's clock shows hour:minute."""
    local = shanghai(after_ms)
    at = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if at < local:
        at += timedelta(days=1)
    return int(at.timestamp() * 1000)


def local_hour(ms: int) -> float:
    """Shanghai's hour of day as a fraction (18.5 is half past six in the evening)."""
    t = shanghai(ms)
    return t.hour + t.minute / 60 + t.second / 3600
