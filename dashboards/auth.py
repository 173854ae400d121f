"""Access to the API and the pages: who is calling, and whether their roles permit the route.

Two ways in, both declared in the OpenAPI document as security schemes:

- ``session``: a person signs in (``POST /api/auth/login``) and the browser keeps an HttpOnly,
  SameSite=Strict cookie, so the pages' own ``fetch()`` and ``EventSource`` calls carry it.
- ``token``: a machine sends ``Authorization: Bearer wlt_…`` (tokens are made by an admin).

Each route states its rule with a dependency: ``Viewer`` (any account: reads), ``Operator``,
``Maintainer``, ``Tester``, ``Admin``, or ``require(...)`` for a route several roles may use.
No credentials → 401; credentials whose roles do not permit the route → 403. The operations
pages redirect to the login page instead (``GuardedPages``). ``/healthz``, ``/readyz``,
``/metrics`` and ``/api/stats`` stay open for probes and Prometheus. docs/access.md tells the
rules in full; tests/integration/test_access.py holds the decision for every route.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import RedirectResponse
from fastapi.routing import iter_route_contexts
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Scope

from dashboards.access_audit import AccessAudit
from dashboards.accounts import AccountStore, Principal, Role
from dashboards.login_throttle import LoginThrottle
from foundation.metrics import AccessCounters
from foundation.service_clock import ClockMs
from wanli.settings import Mode, Settings

log = logging.getLogger(__name__)

SESSION_COOKIE = "wanli_session"
LOGIN_PAGE = "/ops/login.html"
# The development account, created in development mode when there is no account at all; refused in production.
DEVELOPMENT_USERNAME = "dev"
DEVELOPMENT_PASSWORD = "wanli-dev"

bearer_scheme = HTTPBearer(auto_error=False, scheme_name="token",
                           description="An API token for a machine (`wanli tokens create`, or `POST /api/tokens`).")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, scheme_name="session",
                             description="The session cookie a person's browser gets from `POST /api/auth/login`.")


class ErrorPublic(BaseModel):
    detail: str


@dataclass
class Access:
    """The account store and the rules that depend on the mode the service runs in."""

    store: AccountStore
    development: bool
    cookie_secure: bool
    clock_ms: ClockMs
    audit: AccessAudit
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    counters: AccessCounters = field(default_factory=AccessCounters)

    @classmethod
    def from_settings(cls, engine: Engine, settings: Settings, clock_ms: ClockMs) -> Access:
        store = AccountStore(engine, settings.auth_secret_key.get_secret_value(),
                             session_idle_ms=int(settings.auth_session_idle_hours * 3_600_000),
                             session_max_ms=int(settings.auth_session_max_days * 86_400_000))
        throttle = LoginThrottle(free_failures_per_source=settings.auth_login_free_failures_per_source,
                                 free_failures_per_account=settings.auth_login_free_failures_per_account,
                                 max_delay_ms=int(settings.auth_login_max_delay_s * 1000))
        return cls(store, settings.mode is Mode.DEVELOPMENT, settings.auth_cookie_is_secure, clock_ms,
                   AccessAudit(engine), throttle)

    def refused(self, reason: str) -> None:
        """Count a refusal (``wanli_access_refused_total{reason}``)."""
        self.counters.add(AccessCounters.REFUSED, reason)

    def authenticate(self, bearer: str | None, session: str | None) -> Principal | None:
        """The caller of these credentials, or None. A Bearer token, when sent, is the only one looked at."""
        now = self.clock_ms()
        if bearer is not None:
            principal = self.store.token_principal(bearer, now)
        elif session:
            principal = self.store.session_principal(session, now)
        else:
            return None
        if principal is not None and principal.development_only and not self.development:
            return None
        return principal

    def set_session_cookie(self, response: Response, session_id: str) -> None:
        response.set_cookie(SESSION_COOKIE, session_id, max_age=self.store.session_max_ms // 1000, path="/",
                            httponly=True, samesite="strict", secure=self.cookie_secure)

    def clear_session_cookie(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=self.cookie_secure)

    def ensure_development_account(self, http_host: str) -> None:
        """Development mode with no account at all: make ``dev`` (admin) so that a newcomer can sign in.

        Prints how to sign in while that account still has the development password.
        """
        if not self.development:
            return
        now = self.clock_ms()
        if self.store.count_users() == 0:
            self.store.add_user(DEVELOPMENT_USERNAME, DEVELOPMENT_PASSWORD, [Role.ADMIN], now,
                                display_name="开发账号", development_only=True)
        if any(u.development_only and u.disabled_ms is None for u in self.store.users()):
            print(f"  development mode: sign in as {DEVELOPMENT_USERNAME} / {DEVELOPMENT_PASSWORD} "
                  "(refused outside development mode; docs/access.md)", flush=True)
            if not _is_loopback(http_host):
                log.warning("development account %r is enabled while the API listens on %s, beyond this machine",
                            DEVELOPMENT_USERNAME, http_host)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def get_access(request: Request) -> Access:
    return request.app.state.access  # type: ignore[no-any-return]


def current_principal(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    session: Annotated[str | None, Depends(cookie_scheme)],
) -> Principal | None:
    return get_access(request).authenticate(bearer.credentials if bearer else None, session)


def _unauthenticated() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "未登录或登录已过期：请先登录（sign in, or send a Bearer token）",
                         headers={"WWW-Authenticate": "Bearer"})


# What a station-bound responder (docs/access.md) may read: its own incidents (the routes filter them), a
# building it is sent to, the street's places. Not the wall's streams, exports, maps or KPIs, which show
# every incident of the street.
STATION_BOUND_READS = frozenset({  # paths whose router says "any account may read"
    "/api/auth/me", "/api/auth/password", "/api/incidents", "/api/incidents/{incident_id}",
    "/api/incidents/{incident_id}/notifications", "/api/incidents/{incident_id}/actions",  # (checked there)
    "/api/buildings/{building_id}", "/api/hierarchy", "/api/device-kinds",
})


def _make_requirement(roles: tuple[Role, ...], *, reset_due_ok: bool = False
                      ) -> Callable[[Request, Principal | None], Principal]:
    def requirement(request: Request, principal: Annotated[Principal | None, Depends(current_principal)]) -> Principal:
        if principal is None:
            raise _unauthenticated()
        if principal.must_change_password and not reset_due_ok:
            get_access(request).refused("password_reset_due")
            raise HTTPException(status.HTTP_403_FORBIDDEN, "管理员要求您先修改密码（an admin asked for a new password: "
                                                           "POST /api/auth/password first）")
        route = request.scope.get("route")
        if (roles == (Role.VIEWER,) and principal.station_bound
                and getattr(route, "path_format", None) not in STATION_BOUND_READS):
            get_access(request).refused("station")
            raise HTTPException(status.HTTP_403_FORBIDDEN, "处置人员只能查看派给本站的事件（a responder bound to its "
                                                           "station reads only the incidents dispatched to it）")
        if not any(principal.may(r) for r in roles):
            names = "、".join(f"「{r.label_zh}」" for r in roles)
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"权限不足：需要{names}角色（needs role {' or '.join(r.value for r in roles)}）")
        return principal

    requirement.__name__ = "require_" + "_or_".join(r.value for r in roles) + ("_reset_due_ok" if reset_due_ok else "")
    requirement.required_roles = roles  # type: ignore[attr-defined]  # read by document_access
    return requirement


_REQUIREMENTS: dict[tuple[Role, ...], Callable[[Request, Principal | None], Principal]] = {}


def require(*roles: Role) -> Callable[[Request, Principal | None], Principal]:
    """The dependency for a route that any of ``roles`` may call (admin always may; viewer means any account)."""
    key = tuple(roles)
    if key not in _REQUIREMENTS:  # one function per rule, so FastAPI resolves it once per request
        _REQUIREMENTS[key] = _make_requirement(key)
    return _REQUIREMENTS[key]


Viewer = Annotated[Principal, Depends(require(Role.VIEWER))]
Operator = Annotated[Principal, Depends(require(Role.OPERATOR))]
Maintainer = Annotated[Principal, Depends(require(Role.MAINTAINER))]
Tester = Annotated[Principal, Depends(require(Role.TESTER))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
SignedIn = Viewer  # any account, whatever its roles
# Any account, even one an admin has told to choose a new password (who am I, change my password).
SignedInResetDue = Annotated[Principal, Depends(_make_requirement((Role.VIEWER,), reset_due_ok=True))]

# For routers whose every route has one rule: APIRouter(dependencies=VIEWER_ONLY).
VIEWER_ONLY = [Depends(require(Role.VIEWER))]
TESTER_ONLY = [Depends(require(Role.TESTER))]


def actor_of(who: Principal, on_behalf_of: str = "") -> str:
    """The name the audit trail keeps: the caller's credential, and nothing the request says
    (``on_behalf_of`` is ignored: a token names a person only by being issued in their name)."""
    return who.actor[:100]


def required_roles(route: Any) -> tuple[Role, ...] | None:
    """The roles a route asks for (None: an open route): the strictest rule among its dependencies
    (a router's "any account may read" and the route's own "maintainer" give "maintainer")."""
    found: list[tuple[Role, ...]] = []
    pending = [route.dependant] if getattr(route, "dependant", None) is not None else []
    while pending:
        dep = pending.pop()
        roles = getattr(dep.call, "required_roles", None)
        if roles is not None:
            found.append(roles)
        pending.extend(dep.dependencies)
    strict = [r for r in found if r != (Role.VIEWER,)]
    return strict[0] if strict else (found[0] if found else None)


def route_rules(app: FastAPI) -> dict[tuple[str, str], tuple[Role, ...] | None]:
    """(method, path) → the roles it needs (None: open), for every API route of the app."""
    rules: dict[tuple[str, str], tuple[Role, ...] | None] = {}
    for route in iter_route_contexts(app.routes):
        if getattr(route, "dependant", None) is None or not route.methods:
            continue  # not an API route (the pages' mount, the documentation's own pages)
        for method in route.methods:
            rules[(method, route.path_format)] = required_roles(route)
    return rules


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorPublic"}}}}


def document_access(app: FastAPI) -> None:
    """The OpenAPI document tells, for every guarded operation, the roles it needs (``x-required-roles``),
    its security schemes, and its 401 and 403; and 404 / 409 where a path names a thing / a call changes one."""
    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = base_openapi()
        rules = route_rules(app)
        schema.setdefault("components", {}).setdefault("schemas", {})["ErrorPublic"] = ErrorPublic.model_json_schema()
        for path, operations in schema.get("paths", {}).items():
            for method, op in operations.items():
                responses = op.setdefault("responses", {})
                roles = rules.get((method.upper(), path))
                if roles:
                    op["x-required-roles"] = [r.value for r in roles]
                    op.setdefault("security", [{"token": []}, {"session": []}])
                    responses.setdefault("401", _error("no credentials, or expired or revoked ones"))
                    responses.setdefault("403", _error("the caller's roles do not include " + " or ".join(roles)))
                if "{" in path:
                    responses.setdefault("404", _error("not found"))
                if roles and method in ("post", "put", "patch", "delete"):
                    responses.setdefault("409", _error("conflicts with the current state"))
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def operation_id(route: Any) -> str:
    """The route function's own name: short, stable names for generated clients (``list_incidents``)."""
    return str(route.name)


class GuardedPages(StaticFiles):
    """The operations pages: a visitor who is not signed in is sent to the login page (and back after)."""

    OPEN = ("login.html", "answer.html")  # the answer page: its signed link is the person's only key

    async def get_response(self, path: str, scope: Scope) -> Response:
        if self._is_page(path) and path not in self.OPEN:
            request = Request(scope)
            access: Access = request.app.state.access
            if await run_in_threadpool(access.authenticate, None, request.cookies.get(SESSION_COOKIE)) is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"{LOGIN_PAGE}?next={quote(target, safe='/')}", status_code=303)
        return await super().get_response(path, scope)

    @staticmethod
    def _is_page(path: str) -> bool:
        return path in ("", ".") or path.endswith("/") or path.endswith(".html")
