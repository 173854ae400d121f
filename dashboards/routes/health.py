from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from dashboards.deps import Ctx
from wanli.metrics import AccessCollector, WanliCollector

router = APIRouter(tags=["operations"])


@router.get("/api/stats")
def stats(ctx: Ctx, last: Annotated[int | None, Query(ge=1, le=200_000)] = None, latency: bool = True) -> dict[str, Any]:
    """Ingest counters, the spool, the telemetry store and latency percentiles (milliseconds).

    ``last``: latency percentiles over only the last N messages; ``latency=false``: leave them
    out (they sort up to 200,000 numbers; a poller asking often should not pay for that).
    """
    return {**ctx.snapshot(last=last, latency=latency), "live_screens": ctx.feed.subscriber_count}


@router.get("/metrics", include_in_schema=False)
def metrics(ctx: Ctx, request: Request) -> Response:
    """Prometheus exposition."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WanliCollector(ctx.snapshot))
    registry.register(AccessCollector(request.app.state.access.counters))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
def readyz(ctx: Ctx) -> JSONResponse:
    """Ready when ingest is subscribed to the broker."""
    ready = ctx.ingest_ready()
    return JSONResponse({"ingest": "subscribed" if ready else "not subscribed"}, status_code=200 if ready else 503)
