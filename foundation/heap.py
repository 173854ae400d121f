"""Keeping the garbage collector's full passes short, so that they do not hold up an alarm.

CPython's cyclic collector walks every tracked object of the oldest generation in one pass,
holding the interpreter meanwhile. A street's service keeps several million such objects for
good (the registry's records and states, the rules' places, the hierarchy), so each full pass
took 100-240 ms, many times a minute under load (measured with ``gc.callbacks`` during
``wanli bench alerts``), and an alarm arriving then waited for it. ``gc.freeze`` moves
everything alive into a permanent generation the collector no longer walks: done at start and
again every minute, full passes walk only what was made since. Reference counting still frees
whatever is frozen and then dropped; only a reference *cycle* that dies after being frozen
would stay (with whatever it holds: connections, files), so every hour the frozen objects are
given back to the collector for one full pass (a few hundred milliseconds) and frozen again,
and all of them when the service stops: a process that goes on, as a test run starting one
service after another does, must not keep every stopped service's cycles. Only a service that
owns its process keeps a heap keeper (``WanliService(owns_process=True)``: ``wanli run``, the
alert benchmark): freezing changes when *every* object of the process is collected, and in a
process hosting other things (the test run) their unclosed sockets were then reported in
whichever later test the collector happened to run.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


class HeapKeeper:
    FREEZE_EVERY_MS = 60_000
    RECLAIM_EVERY_MS = 3_600_000

    def __init__(self, now_ms: int) -> None:
        gc.freeze()
        self._next_freeze_ms = now_ms + self.FREEZE_EVERY_MS
        self._next_reclaim_ms = now_ms + self.RECLAIM_EVERY_MS

    def tick(self, now_ms: int) -> None:
        """Call now and then (the alert ticker does, every second): freezes or reclaims when due."""
        if now_ms >= self._next_reclaim_ms:
            self._next_reclaim_ms = now_ms + self.RECLAIM_EVERY_MS
            self._next_freeze_ms = now_ms + self.FREEZE_EVERY_MS
            started = time.perf_counter()
            gc.unfreeze()
            found = gc.collect()
            gc.freeze()
            log.info("heap: full collection of the frozen objects found %d unreachable in %.0f ms",
                     found, 1000 * (time.perf_counter() - started))
        elif now_ms >= self._next_freeze_ms:
            self._next_freeze_ms = now_ms + self.FREEZE_EVERY_MS
            gc.freeze()

    def close(self) -> None:
        """Give every frozen object back to the collector (the service stops)."""
        gc.unfreeze()
