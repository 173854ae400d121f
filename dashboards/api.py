"""The HTTP application: API routes, the operations screen, health checks.

Domain errors become HTTP status codes here and nowhere else:
NotFound → 404, Invalid → 422, Conflict / IllegalTransition → 409, StoreUnavailable → 503.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from dashboards.deps import AppContext
from dashboards.routes import (
    buildings,
    dead_letters,
    devices,
    health,
    incidents,
    kpi,
    live,
    notifications,
    places,
)
from wanli.errors import Conflict, Invalid, NotFound, StoreUnavailable, WanliError

_STATUS: list[tuple[type[WanliError], int]] = [(NotFound, 404), (Invalid, 422), (Conflict, 409), (StoreUnavailable, 503)]


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(title="Wanli Safety", version="0.1.0",
                  description="Community safety sensing for 万里街道: incidents, devices, dead letters, live stream.")
    app.state.ctx = ctx
    ctx.alerts.subscribe(lambda changes: _publish_changes(ctx, changes))

    for error, code in _STATUS:
        app.add_exception_handler(error, _handler(code))
    for module in (incidents, devices, dead_letters, places, kpi, live, health):
        app.include_router(module.router)
    app.include_router(devices.kinds_router)
    app.include_router(buildings.router)
    app.include_router(notifications.router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ops/")

    app.mount("/ops", StaticFiles(directory=str(resources.files("dashboards").joinpath("static")), html=True), name="ops")
    return app


def _publish_changes(ctx: AppContext, changes) -> None:  # type: ignore[no-untyped-def]
    for change in changes:
        ctx.feed.publish(live.incident_event(change))


def _handler(code: int):  # type: ignore[no-untyped-def]
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handle
