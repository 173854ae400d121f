"""Rate-limited log lines: the first line of a key through, then one summary per interval.

A device sending 1,000 bad messages a second must not write 1,000 log lines a second (21k
lines in 30 s filled a disk once). Keyed by whatever the line concerns, e.g. ``(device,
reason)``. Pure; time passed in.

    limiter = LogLimiter(interval_ms=60_000)
    if (suppressed := limiter.allow(key, now_ms)) is not None:
        log.warning("rejected device=%s reason=%s: %s (%d like it not logged)", d, r, detail, suppressed)
    ...
    for key, suppressed in limiter.flush(now_ms):   # now and then: the counts of keys that went quiet
        log.warning("device=%s reason=%s: %d more not logged", *key, suppressed)
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Window:
    opened_ms: int
    suppressed: int = 0


class LogLimiter:
    def __init__(self, interval_ms: int = 60_000, max_keys: int = 10_000) -> None:
        if interval_ms < 1 or max_keys < 1:
            raise ValueError("interval_ms and max_keys must be at least 1")
        self.interval_ms = interval_ms
        self.max_keys = max_keys
        self._windows: OrderedDict[Hashable, _Window] = OrderedDict()  # oldest window first
        self.total_suppressed = 0

    def allow(self, key: Hashable, now_ms: int) -> int | None:
        """None: do not log this line (it is counted). A number: log it, and say that many were not since the last."""
        w = self._windows.get(key)
        if w is not None and now_ms - w.opened_ms < self.interval_ms:
            w.suppressed += 1
            self.total_suppressed += 1
            return None
        suppressed = w.suppressed if w is not None else 0
        if w is not None:
            del self._windows[key]
        self._windows[key] = _Window(now_ms)
        if len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)  # its count is lost from the lines, not from total_suppressed
        return suppressed

    def flush(self, now_ms: int) -> list[tuple[Hashable, int]]:
        """Keys whose interval has ended with lines not logged, and how many; their windows close."""
        out: list[tuple[Hashable, int]] = []
        while self._windows:
            key, w = next(iter(self._windows.items()))
            if now_ms - w.opened_ms < self.interval_ms:
                break
            del self._windows[key]
            if w.suppressed:
                out.append((key, w.suppressed))
        return out


def log_limited(logger: logging.Logger, limiter: LogLimiter, key: Hashable, now_ms: int, level: int, msg: str,
                *args: object) -> bool:
    """Log ``msg % args`` unless ``limiter`` holds it back for ``key``; say how many were held back since the last."""
    suppressed = limiter.allow(key, now_ms)
    if suppressed is None:
        return False
    if suppressed:
        logger.log(level, msg + " (and %d like it not logged)", *args, suppressed)
    else:
        logger.log(level, msg, *args)
    return True


def log_held_back(logger: logging.Logger, limiter: LogLimiter, now_ms: int, level: int = logging.WARNING) -> int:
    """One summary line per key whose interval ended with lines held back (call it now and then); returns how many."""
    held = limiter.flush(now_ms)
    for key, count in held:
        logger.log(level, "%d more log lines like the last for %s not logged", count, key)
    return len(held)
