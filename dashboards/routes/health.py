from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from dashboards.deps import Ctx
from foundation.metrics import AccessCollector, WanliCollector

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
    """Ready while the alarm path works: ingest subscribed and no fault impairing it (alerts/system_faults.py).

    503 names each fault that impairs the alarm path (a disk at the alarm reserve, the database
    unwritable, notices not leaving, the broker away, a receiver restarting); faults that only
    degrade telemetry are listed under ``degraded`` with 200.
    """
    ready = ctx.ingest_ready()
    faults = list(ctx.faults())
    impaired = [f for f in faults if f.impairs_alarms]
    roles = ctx.roles()  # this instance and what it holds (the leases' detail is in /api/stats, signed in)
    held = roles.get("held")
    body: dict[str, Any] = {
        "ingest": ("standby" if held is not None and not any(r.startswith("ingest") for r in held)
                   else "subscribed" if ready else "not subscribed"),
        **({"instance": roles.get("instance"), "held": held} if held is not None else {}),
        "impaired": [{"condition": f.condition, "device_id": f.device_id, "title": f.title, "detail": f.detail}
                     for f in impaired],
        "degraded": [{"condition": f.condition, "device_id": f.device_id, "title": f.title, "detail": f.detail}
                     for f in faults if not f.impairs_alarms],
    }
    return JSONResponse(body, status_code=200 if ready and not impaired else 503)
