from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from fastapi import APIRouter
from fastapi.sse import EventSourceResponse, ServerSentEvent

from alerts.service import IncidentChange
from dashboards.deps import Ctx
from dashboards.live import OVERFLOW
from dashboards.schemas import IncidentPublic

router = APIRouter(prefix="/api", tags=["live"])


def incident_event(change: IncidentChange) -> dict[str, Any]:
    return {"created": change.created, "incident": IncidentPublic.of(change.incident).model_dump(mode="json")}


@router.get("/stream", response_class=EventSourceResponse)
async def stream(ctx: Ctx) -> AsyncIterable[ServerSentEvent]:
    """Live incident changes: first a ``snapshot`` of the active incidents, then one ``incident`` event per change."""
    async with ctx.feed.subscription() as q:
        snapshot = [IncidentPublic.of(i).model_dump(mode="json") for i in ctx.alerts.active()]
        yield ServerSentEvent(event="snapshot", data={"incidents": snapshot}, retry=2000)
        while True:
            event = await q.get()
            if event is OVERFLOW:
                return
            yield ServerSentEvent(event="incident", data=event)
