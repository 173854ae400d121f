"""Fan-out of incident changes, and of who was told of them, to every open screen (one bounded asyncio queue
per screen).

``follow`` wires a feed to the alert service and the dispatcher; the runtime (wanli/runtime.py, the composition
root) calls it once, whether or not an HTTP app is built over the feed. Two kinds of event travel:
an incident's change (a dict, sent to the screens as the ``incident`` event) and ``NoticesChanged``
(the notices of these incidents were queued or sent: the stream reads them for each screen with that screen's
access, dashboards/routes/live.py, and sends a ``notices`` event).

``publish`` is called from the ingest worker thread; it hands over to the event loop with
``call_soon_threadsafe``. A screen that cannot keep up is not allowed to grow memory: its
queue overflows, its stream ends, and the browser's EventSource reconnects and starts
again from a fresh snapshot, so it loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dashboards.schemas import IncidentPublic

if TYPE_CHECKING:
    from alerts.service import AlertService, IncidentChange

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


@dataclass(frozen=True, slots=True)
class NoticesChanged:
    """Notices of these incidents were queued or sent: a screen showing them reads who was told again."""

    incident_ids: frozenset[str]


def incident_event(change: IncidentChange) -> dict[str, Any]:
    return {"created": change.created, "incident": IncidentPublic.of(change.incident).model_dump(mode="json")}


def follow(feed: LiveFeed, alerts: AlertService) -> Callable[[Iterable[str]], None]:
    """Publish every incident change on the feed, and a ``NoticesChanged`` when an active incident opened or moved to
    another escalation step, tier or policy (its notices were queued in the change's own transaction). Returns
    ``notices_changed(incident_ids)`` for the dispatcher to call once it has sent an incident's notices."""
    told_for: dict[str, tuple[str, int, str]] = {}  # incident id → the step whose notices the screens were told of

    def notices_changed(incident_ids: Iterable[str]) -> None:
        ids = frozenset(incident_ids)
        if ids:
            feed.publish(NoticesChanged(ids))

    def on_changes(changes: Sequence[IncidentChange]) -> None:
        stepped: list[str] = []
        for change in changes:
            feed.publish(incident_event(change))
            incident = change.incident
            if not incident.state.is_active:
                told_for.pop(incident.id, None)
                continue
            step = (incident.escalation_policy, incident.escalation_step, incident.tier)
            if told_for.get(incident.id) != step:
                told_for[incident.id] = step
                stepped.append(incident.id)
        notices_changed(stepped)

    alerts.subscribe(on_changes)
    return notices_changed
