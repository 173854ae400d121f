"""The HTTP API and the operations screen.

Domain errors become HTTP status codes here and nowhere else:
NotFound → 404, Conflict / IllegalTransition → 409, StoreUnavailable → 503.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from fastapi.staticfiles import StaticFiles

from alerts.service import AlertService, IncidentChange
from alerts.store import IncidentStore
from dashboards.live import OVERFLOW, LiveFeed
from dashboards.schemas import (
    DeadLetterPublic,
    DevicePublic,
    IncidentActionRequest,
    IncidentDetail,
    IncidentPublic,
    AuditEntryPublic,
)
from devices.registry import DeviceRegistry
from ingest.dead_letters import DeadLetterStore
from ingest.pipeline import IngestCounters
from wanli.errors import Conflict, NotFound, StoreUnavailable


@dataclass
class AppContext:
    """Everything the API reads or acts on, built by the runtime (or a test)."""

    alerts: AlertService
    incidents: IncidentStore
    registry: DeviceRegistry
    dead_letters: DeadLetterStore
    feed: LiveFeed
    counters: IngestCounters
    ingest_ready: Callable[[], bool] = lambda: True
    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]


Ctx = Annotated[AppContext, Depends(get_ctx)]


def incident_event(change: IncidentChange) -> dict[str, Any]:
    return {"created": change.created, "incident": IncidentPublic.of(change.incident).model_dump(mode="json")}


router = APIRouter(prefix="/api")


@router.get("/incidents", response_model=list[IncidentPublic])
def list_incidents(ctx: Ctx, state: Annotated[list[str], Query()] = [], building_id: str = "",
                   active: bool = False, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[IncidentPublic]:
    """Incidents, newest change first. ``active=true`` gives the live wall's set."""
    if active:
        found = ctx.alerts.active()
        if building_id:
            found = [i for i in found if i.location.building_id == building_id]
        return [IncidentPublic.of(i) for i in found[:limit]]
    return [IncidentPublic.of(i) for i in ctx.incidents.list(state, building_id, limit)]


@router.get("/incidents/{incident_id}", response_model=IncidentDetail)
def get_incident(ctx: Ctx, incident_id: str) -> IncidentDetail:
    incident = ctx.incidents.get(incident_id)
    audit = [AuditEntryPublic.of(a) for a in ctx.incidents.audit(incident_id)]
    return IncidentDetail(**IncidentPublic.of(incident).model_dump(), audit=audit)


@router.post("/incidents/{incident_id}/actions", response_model=IncidentPublic)
def act_on_incident(ctx: Ctx, incident_id: str, body: IncidentActionRequest) -> IncidentPublic:
    """Acknowledge, dispatch, arrive, resolve, verify (close), mark false alarm, merge, or add a note."""
    updated = ctx.alerts.act(incident_id, body.action, body.actor, body.note, ctx.clock_ms())
    return IncidentPublic.of(updated)


@router.get("/devices", response_model=list[DevicePublic])
def list_devices(ctx: Ctx, kind: str = "", building_id: str = "", community_id: str = "",
                 limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[DevicePublic]:
    recs = ctx.registry.list(kind=kind, building_id=building_id, community_id=community_id, limit=limit)
    return [DevicePublic.of(d, ctx.registry.location(d)) for d in recs]


@router.get("/devices/{device_id}", response_model=DevicePublic)
def get_device(ctx: Ctx, device_id: str) -> DevicePublic:
    rec = ctx.registry.get(device_id)
    return DevicePublic.of(rec, ctx.registry.location(rec))


@router.get("/dead-letters", response_model=list[DeadLetterPublic])
def list_dead_letters(ctx: Ctx, reason: str = "", device_id: str = "", before_id: int | None = None,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[DeadLetterPublic]:
    """Rejected and quarantined messages, newest first, with their reason and raw payload preview."""
    return [DeadLetterPublic.of(d) for d in ctx.dead_letters.list(reason, device_id, limit, before_id)]


@router.get("/dead-letters/counts")
def dead_letter_counts(ctx: Ctx) -> dict[str, int]:
    return ctx.dead_letters.counts()


@router.get("/stats")
def stats(ctx: Ctx) -> dict[str, Any]:
    c = ctx.counters
    return {
        "received": c.received, "readings": c.readings, "stored_points": c.stored_points,
        "incidents_changed": c.incidents_changed, "rejected": dict(c.rejected), "by_kind": dict(c.by_kind),
        "store_retries": c.store_retries, "live_screens": ctx.feed.subscriber_count,
    }


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


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(title="Wanli Safety", version="0.1.0",
                  description="Community safety sensing for 万里街道: incidents, devices, dead letters, live stream.")
    app.state.ctx = ctx
    ctx.alerts.subscribe(lambda changes: [ctx.feed.publish(incident_event(c)) for c in changes])

    @app.exception_handler(NotFound)
    async def _not_found(_req: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(_req: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(StoreUnavailable)
    async def _unavailable(_req: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    app.include_router(router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        ready = ctx.ingest_ready()
        return JSONResponse({"ingest": "subscribed" if ready else "not subscribed"}, status_code=200 if ready else 503)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ops/")

    static_dir = resources.files("dashboards").joinpath("static")
    app.mount("/ops", StaticFiles(directory=str(static_dir), html=True), name="ops")
    return app
