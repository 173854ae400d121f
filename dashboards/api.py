"""The HTTP application: API routes, the operations screen, health checks.

Domain errors become HTTP status codes here and nowhere else:
NotFound → 404, TooLarge → 413, Invalid → 422, Conflict / IllegalTransition → 409, StoreUnavailable → 503.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse

from dashboards.api_docs import add_offline_docs
from dashboards.auth import SESSION_COOKIE, Access, GuardedPages, document_access, operation_id
from dashboards.browser_guard import BrowserGuard
from dashboards.deps import AppContext
from dashboards.routes import (
    buildings,
    dead_letters,
    devices,
    drills,
    health,
    incidents,
    kpi,
    live,
    notifications,
    places,
    policies,
    simulations,
)
from dashboards.routes import auth as auth_routes
from dashboards.routes import exports, notify
from foundation.errors import Conflict, Invalid, NotFound, StoreUnavailable, TooLarge, WanliError

_STATUS: list[tuple[type[WanliError], int]] = [(NotFound, 404), (TooLarge, 413), (Invalid, 422), (Conflict, 409), (StoreUnavailable, 503)]


def create_app(ctx: AppContext) -> FastAPI:
    app = FastAPI(title="Wanli Safety", version="0.1.0",
                  description="Community safety sensing for 万里街道: incidents, devices, dead letters, live stream. "
                              "People sign in for a session cookie, machines send a Bearer token; "
                              "`x-required-roles` names the roles an operation needs (docs/access.md).",
                  generate_unique_id_function=operation_id, docs_url=None, redoc_url=None)
    add_offline_docs(app)  # /docs and /redoc from vendored files, not a CDN
    app.state.ctx = ctx
    if ctx.settings is None or ctx.engine is None:
        raise ValueError("the API needs the settings and the database engine for its accounts")
    app.state.access = access = Access.from_settings(ctx.engine, ctx.settings, ctx.clock_ms)
    access.ensure_development_account(ctx.settings.http_host)
    # CSRF checks and the security headers (CSP, no framing, nosniff, referrer) on every answer
    app.add_middleware(BrowserGuard, session_cookie=SESSION_COOKIE, expected_token=access.store.csrf_token,
                       refused=access.refused)

    for error, code in _STATUS:
        app.add_exception_handler(error, _handler(code))
    for module in (incidents, devices, dead_letters, places, kpi, live, health):
        app.include_router(module.router)
    app.include_router(devices.kinds_router)
    app.include_router(buildings.router)
    app.include_router(notifications.router)
    for router in (notify.router, notify.answer_router, notify.callback_router):
        app.include_router(router)
    app.include_router(simulations.router)
    app.include_router(policies.router)
    app.include_router(drills.router)
    app.include_router(drills.clock_router)
    for router in (auth_routes.router, auth_routes.admin_router, exports.router):
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ops/")

    app.mount("/ops", GuardedPages(directory=str(resources.files("dashboards").joinpath("static")), html=True), name="ops")
    document_access(app)
    return app


def _handler(code: int):  # type: ignore[no-untyped-def]
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=code)

    return handle
