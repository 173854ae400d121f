"""Fan-out of incident changes to every open screen (one bounded asyncio queue per screen).

``publish`` is called from the ingest worker thread; it hands over to the event loop with
``call_soon_threadsafe``. A screen that cannot keep up is not allowed to grow memory: its
queue overflows, its stream ends, and the browser's EventSource reconnects and starts
again from a fresh snapshot, so it loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

log = logging.getLogger(__name__)

OVERFLOW: Any = object()  # this screen fell behind: end its stream, it reconnects with a fresh snapshot
CLOSED: Any = object()  # the service is stopping: end every stream now rather than wait for a timeout


class LiveFeed:
    def __init__(self, queue_size: int = 1000) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, event: dict[str, Any]) -> None:
        """Thread-safe: deliver an event to every subscriber."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._fan_out, event)
        except RuntimeError:  # loop shutting down
            pass

    def _fan_out(self, event: dict[str, Any]) -> None:
        for q in list(self._subscribers):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("live screen too slow; closing its stream so it reconnects with a fresh snapshot")
                self._subscribers.discard(q)
                q.get_nowait()
                q.put_nowait(OVERFLOW)

    def close(self) -> None:
        """End every open stream (call on the event loop, before the HTTP server stops)."""
        for q in list(self._subscribers):
            while not q.empty():
                q.get_nowait()
            q.put_nowait(CLOSED)
        self._subscribers.clear()

    @asynccontextmanager
    async def subscription(self) -> AsyncIterator[asyncio.Queue[Any]]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        q: asyncio.Queue[Any] = asyncio.Queue(self._queue_size)
        self._subscribers.add(q)
        try:
            yield q
        finally:
            self._subscribers.discard(q)
