"""A background loop on its own named thread: sleeps until woken or a timeout, stops cleanly."""

from __future__ import annotations

import threading
from collections.abc import Callable


class WakeableLoop:
    """Subclasses write ``_run``, looping while ``not self._stop.is_set()`` and pausing with ``_pause``."""

    def __init__(self, name: str) -> None:
        # Whether a round may run now: with several instances, only where the loop's role is held
        # (wanli/leases.py); the loop waits, awake, while it may not.
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
