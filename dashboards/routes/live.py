from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import Any

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from alerts.service import IncidentChange
from dashboards.auth import VIEWER_ONLY
from dashboards.deps import Ctx
from dashboards.live import CLOSED, OVERFLOW
from dashboards.schemas import IncidentPublic

router = APIRouter(prefix="/api", tags=["live"], dependencies=VIEWER_ONLY)
HEARTBEAT_S = 15.0


def incident_event(change: IncidentChange) -> dict[str, Any]:
    return {"created": change.created, "incident": IncidentPublic.of(change.incident).model_dump(mode="json")}


@router.get("/stream", response_class=EventSourceResponse, responses={200: {
    "description": "server-sent events: `snapshot`, then `incident` per change, `heartbeat` when quiet",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def stream(ctx: Ctx) -> AsyncIterable[ServerSentEvent]:
    """Live incident changes: first a ``snapshot`` of the active incidents, then one ``incident`` event per change."""
    async with ctx.feed.subscription() as q:
        snapshot = [IncidentPublic.of(i).model_dump(mode="json") for i in ctx.alerts.active()]
        yield ServerSentEvent(event="snapshot", data={"incidents": snapshot}, retry=2000)
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
            yield ServerSentEvent(event="incident", data=event)
