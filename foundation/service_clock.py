"""The service's clock: the wall clock, or a tester's (accelerated, started at another moment).

Everything that waits, times out or escalates reads the clock it is given (the rules'
``now_ms``, ingest's ``ts`` checks, escalation deadlines, the API's timestamps). ``wanli run``
gives them this one. With ``WANLI_CLOCK_SPEED`` 3600 a real second is a simulated hour, so a
tester can play a day-long case (26 hours without activity in an elderly resident's home) in
under half a minute against a service they started; ``WANLI_CLOCK_START`` starts it at a
chosen moment (an evening, a night). Production refuses both (wanli/settings.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeAlias

ClockMs: TypeAlias = Callable[[], int]
"""A clock: milliseconds since the epoch (UTC). What every waiting, timing out or escalating piece is given
(``clock_ms``), so that tests advance a fake one instead of sleeping; ``wall_ms`` is the default."""


def wall_ms() -> int:
    """The wall clock, in milliseconds since the epoch (UTC): every ``ClockMs`` parameter's default."""
    return time.time_ns() // 1_000_000


class ServiceClock:
    """Milliseconds since the epoch (UTC), ``speed`` times real time from ``start_ms`` (default: now)."""

    def __init__(self, speed: float = 1.0, start_ms: int | None = None, *, wall: ClockMs = wall_ms,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self.speed = speed
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._base_ms = wall() if start_ms is None else start_ms
        self._base_mono = monotonic()

    def now_ms(self) -> int:
        with self._lock:
            return self._base_ms + int((self._monotonic() - self._base_mono) * 1000 * self.speed)

    def advance(self, ms: int) -> int:
        """Step ahead ``ms`` at once (never back); the new time."""
        if ms < 0:
            raise ValueError("the clock never goes backwards")
        with self._lock:
            self._base_ms += ms
        return self.now_ms()
