"""A background loop on its own named thread: sleeps until woken or a timeout, stops cleanly; and the one
``Backoff`` every retry waits by."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable


class Backoff:
    """A retry's waits: ``first_s``, doubling up to ``cap_s``, each spread by ±``jitter`` (a fraction), so that
    many clients that lost the same server (ingest's receivers, the simulated devices) do not come back in
    step. ``reset()`` after a success. Pure: it only says how long; the randomness is a parameter (tests)."""

    def __init__(self, first_s: float, cap_s: float, *, factor: float = 2.0, jitter: float = 0.2,
                 rng: Callable[[], float] = random.random) -> None:
        if not 0 < first_s <= cap_s or factor < 1 or not 0 <= jitter < 1:
            raise ValueError(f"backoff needs 0 < first_s <= cap_s, factor >= 1, 0 <= jitter < 1; got "
                             f"{first_s}, {cap_s}, {factor}, {jitter}")
        self.first_s, self.cap_s, self.factor, self.jitter = first_s, cap_s, factor, jitter
        self._rng = rng
        self._next_s = first_s

    def next_s(self) -> float:
        """How long to wait before the next attempt (and the one after will be longer, up to the cap)."""
        wait = self._next_s * (1 + self.jitter * (2 * self._rng() - 1))
        self._next_s = min(self._next_s * self.factor, self.cap_s)
        return wait

    def reset(self) -> None:
        """It worked: the next failure waits ``first_s`` again."""
        self._next_s = self.first_s


class WakeableLoop:
    """Subclasses write ``_run``, looping while ``not self._stop.is_set()`` and pausing with ``_pause``."""

    def __init__(self, name: str) -> None:
        # Whether a round may run now: with several instances, only where the loop's role is held
        # (foundation/leases.py); the loop waits, awake, while it may not.
        self.gate: Callable[[], bool] = lambda: True
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """There is work now: end the current pause early."""
        self._wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout_s)

    def _held_back(self) -> bool:
        """True (after a short wait) while the gate is shut: the loop skips its round."""
        if self.gate():
            return False
        self._stop.wait(0.2)
        return True

    def _pause(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _run(self) -> None:
        raise NotImplementedError
