"""The live stream (``GET /api/stream``): what the wall shows, pushed as it changes.

First a ``snapshot``: the active incidents and, for each, who was told (``notices``: incident id → the rows
``GET /api/incidents/{id}/notifications`` answers). Then an ``incident`` event per incident change and a
``notices`` event (``{"incident_id", "notices"}``, the same rows) whenever an incident's notices were queued or
sent; a ``heartbeat`` when quiet. Who was told is read for each screen with that screen's access, exactly as the
HTTP endpoint reads it: household members' names only for those who may see them (dashboards/personal_data.py).
A station-bound credential is refused the stream altogether (docs/access.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterable
from typing import Any

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from dashboards.auth import VIEWER_ONLY, Viewer
from dashboards.deps import Ctx
from dashboards.live import CLOSED, OVERFLOW, NoticesChanged
from dashboards.personal_data import may_see_household_recipients
from dashboards.routes.notifications import told_of
from dashboards.schemas import IncidentPublic

router = APIRouter(prefix="/api", tags=["live"], dependencies=VIEWER_ONLY)
HEARTBEAT_S = 15.0


@router.get("/stream", response_class=EventSourceResponse, responses={200: {
    "description": "server-sent events: `snapshot` (incidents and who was told), then `incident` per change, "
                   "`notices` when an incident's notices were queued or sent, `heartbeat` when quiet",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def stream(ctx: Ctx, who: Viewer) -> AsyncIterable[ServerSentEvent]:
    """Live incident changes: first a ``snapshot`` of the active incidents and who was told of each, then one
    ``incident`` event per change and one ``notices`` event per incident whose notices were queued or sent."""
    family_names = may_see_household_recipients(who)

    async def told(incident_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        rows = await asyncio.to_thread(told_of, ctx, list(incident_ids), family_names)
        return {i: [r.model_dump(mode="json") for r in told] for i, told in rows.items()}

    async with ctx.feed.subscription() as q:
        active = ctx.alerts.active()
        snapshot = [IncidentPublic.of(i).model_dump(mode="json") for i in active]
        notices = await told(i.id for i in active)
        yield ServerSentEvent(event="snapshot", data={"incidents": snapshot, "notices": notices}, retry=2000)
        while True:
            try:
                event = await asyncio.wait_for(q.get(), HEARTBEAT_S)
            except TimeoutError:
                # A named event the page can see (a comment ping it cannot): silence for longer
                # than this means a stalled stream, not a quiet night.
                yield ServerSentEvent(event="heartbeat", data={})
                continue
            if event is OVERFLOW or event is CLOSED:
                return
            if isinstance(event, NoticesChanged):
                for incident_id, rows in (await told(sorted(event.incident_ids))).items():
                    yield ServerSentEvent(event="notices", data={"incident_id": incident_id, "notices": rows})
                continue
            yield ServerSentEvent(event="incident", data=event)
