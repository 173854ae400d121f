"""Signing in and out, who am I, and (for admins) accounts and API tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from dashboards.access_audit import AccessEvent
from dashboards.account_schemas import (
    AccessEventPublic,
    LoginRequest,
    MePublic,
    SignedInPublic,
    PasswordChange,
    SessionStatus,
    TokenCreate,
    TokenIssued,
    TokenPublic,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from dashboards.accounts import Role
from dashboards.auth import SESSION_COOKIE, Access, Admin, ErrorPublic, SignedInResetDue, get_access
from dashboards.deps import Ctx
from dashboards.schemas import ms_to_dt
from foundation.errors import Conflict, Invalid
from foundation.metrics import AccessCounters

AccessDep = Annotated[Access, Depends(get_access)]

router = APIRouter(prefix="/api/auth", tags=["access"])
admin_router = APIRouter(prefix="/api", tags=["access"])

_WRONG = "用户名或密码不正确（wrong username or password）"


@router.post("/login", response_model=SignedInPublic,
             responses={401: {"model": ErrorPublic, "description": "wrong username or password"},
                        429: {"model": ErrorPublic, "description": "too many wrong passwords from this source, "
                                                                   "or for this username from a source that failed too: "
                                                                   "try again after Retry-After seconds"}})
async def login(access: AccessDep, body: LoginRequest, request: Request, response: Response) -> SignedInPublic:
    """Sign a person in: sets the HttpOnly session cookie the pages use (machines use API tokens instead).

    Wrong passwords slow down their source, and their username for sources that failed too; never a
    lockout: the right password from a source with no failures signs in at once (docs/access.md)."""
    now = access.clock_ms()
    source = request.client.host if request.client else ""
    verdict = access.throttle.check(body.username, source, now)
    if not verdict.allowed:
        access.counters.add(AccessCounters.THROTTLED, f"{verdict.scope}:refused")
        wait_s = -(-verdict.wait_ms // 1000)
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"密码错误次数过多，请 {wait_s} 秒后再试（too many wrong passwords: try again in {wait_s} s）",
                            headers={"Retry-After": str(wait_s)})
    # argon2 takes tens of milliseconds of CPU: not on the event loop that serves the live screens
    user = await run_in_threadpool(access.store.check_password, body.username, body.password, now)
    if user is None or (user.development_only and not access.development):
        exists = await run_in_threadpool(access.store.exists, body.username)
        delays = access.throttle.failed(body.username, source, now, account_exists=exists)
        for d in delays:
            access.counters.add(AccessCounters.THROTTLED, f"{d.scope}:delayed")
        if delays:
            await run_in_threadpool(lambda: [access.audit.record(
                AccessEvent.LOGIN_DELAYED, now, actor=body.username, subjects=[f"{d.scope}:{d.key}"], source=source,
                detail=f"{d.failures} wrong passwords: next try in {d.delay_ms} ms") for d in delays])
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, _WRONG)
    access.throttle.succeeded(body.username, source)
    session_id = await run_in_threadpool(access.store.open_session, user, now)
    access.set_session_cookie(response, session_id)
    principal = await run_in_threadpool(access.store.session_principal, session_id, now)
    assert principal is not None
    return SignedInPublic(**MePublic.of(principal).model_dump(), csrf_token=access.store.csrf_token(session_id))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(access: AccessDep, request: Request, response: Response) -> None:
    """End this browser's session (a no-op without one) and clear its cookie."""
    if session_id := request.cookies.get(SESSION_COOKIE):
        access.store.close_session(session_id)
    access.clear_session_cookie(response)


@router.get("/me", response_model=MePublic)
def me(who: SignedInResetDue) -> MePublic:
    """Who the credentials sent belong to, and their roles (the pages show it; a client checks its token)."""
    return MePublic.of(who)


@router.get("/status", response_model=SessionStatus)
def session_status(access: AccessDep, request: Request) -> SessionStatus:
    """Whether this browser is signed in (never 401: the login page asks it before anyone has signed in)."""
    session = request.cookies.get(SESSION_COOKIE)
    principal = access.authenticate(None, session)
    if principal is None or not session:
        return SessionStatus(signed_in=False, me=None)
    return SessionStatus(signed_in=True, me=MePublic.of(principal), csrf_token=access.store.csrf_token(session))


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT,
             responses={422: {"model": ErrorPublic, "description": "wrong current password, or a weak new one"}})
async def change_password(access: AccessDep, who: SignedInResetDue, body: PasswordChange) -> None:
    """A person changes their own password; every session of theirs ends, this one included."""
    if who.kind != "user":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "API tokens have no password")
    now = access.clock_ms()
    if await run_in_threadpool(access.store.check_password, who.name, body.current_password, now) is None:
        raise HTTPException(422, "当前密码不正确（the current password is wrong）")
    await run_in_threadpool(lambda: access.store.update_user(who.name, now, password=body.new_password))


@admin_router.get("/users", response_model=list[UserPublic])
def list_users(access: AccessDep, _who: Admin) -> list[UserPublic]:
    return [UserPublic.of(u) for u in access.store.users()]


def _known_stations(ctx: Ctx, stations: Sequence[str] | None) -> list[str] | None:
    if stations is not None:
        unknown = [s for s in stations if s not in ctx.registry.hierarchy.fire_stations]
        if unknown:
            raise Invalid(f"没有这个微型消防站：{', '.join(unknown)}（no such micro fire station）")
    return None if stations is None else list(stations)


def _responder_needs_stations(roles: Sequence[Role], stations: Sequence[str]) -> None:
    if Role.RESPONDER in roles and not {Role.OPERATOR, Role.ADMIN} & set(roles) and not stations:
        raise Invalid("处置人员须绑定其微型消防站（a responder needs the stations it answers for: stations=[...]）")


@admin_router.post("/users", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(access: AccessDep, ctx: Ctx, _who: Admin, body: UserCreate) -> UserPublic:
    """A new account for a person, with their roles (a responder: with their stations)."""
    _responder_needs_stations(body.roles, body.stations)
    return UserPublic.of(access.store.add_user(body.username, body.password, body.roles, access.clock_ms(),
                                               display_name=body.display_name,
                                               stations=_known_stations(ctx, body.stations) or ()))


@admin_router.patch("/users/{username}", response_model=UserPublic)
def update_user(access: AccessDep, ctx: Ctx, who: Admin, username: str, body: UserUpdate, request: Request
                ) -> UserPublic:
    """Change a person's roles, name or stations, disable or enable them, set a new password, or make them
    choose one (``must_change_password``: they are signed out and may do nothing else until they do)."""
    store = access.store
    current = store.user(username)
    _responder_needs_stations(body.roles if body.roles is not None else current.roles,
                              body.stations if body.stations is not None else current.stations)
    if body.disabled or (body.roles is not None and Role.ADMIN not in body.roles):
        others = [u for u in store.users() if Role.ADMIN in u.roles and u.disabled_ms is None and u.username != username]
        if Role.ADMIN in store.user(username).roles and not others:
            raise Conflict(f"{username} is the last enabled admin; make another admin first")
    now = access.clock_ms()
    updated = store.update_user(username, now, roles=body.roles, display_name=body.display_name,
                                disabled=body.disabled, password=body.password,
                                stations=_known_stations(ctx, body.stations),
                                must_change_password=body.must_change_password)
    if body.must_change_password:
        access.audit.record(AccessEvent.PASSWORD_RESET_FORCED, now, actor=who.actor, subjects=[username],
                            source=request.client.host if request.client else "")
    return UserPublic.of(updated)


@admin_router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(access: AccessDep, _who: Admin) -> list[TokenPublic]:
    return [TokenPublic.of(t) for t in access.store.tokens()]


@admin_router.post("/tokens", response_model=TokenIssued, status_code=status.HTTP_201_CREATED)
def create_token(access: AccessDep, ctx: Ctx, who: Admin, body: TokenCreate) -> TokenIssued:
    """A token for a machine, with its roles (a responder's: with its stations). Its secret is in this answer
    only: store it at once."""
    _responder_needs_stations(body.roles, body.stations)
    now = access.clock_ms()
    expires = now + int(body.expires_in_days * 86_400_000) if body.expires_in_days else None
    token, raw = access.store.create_token(body.name, body.roles, who.actor, now, expires,
                                           stations=_known_stations(ctx, body.stations) or ())
    return TokenIssued(**TokenPublic.of(token).model_dump(), token=raw)


@admin_router.delete("/tokens/{token_id}", response_model=TokenPublic)
def revoke_token(access: AccessDep, _who: Admin, token_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> TokenPublic:
    """Revoke a token: refused from its next request on."""
    return TokenPublic.of(access.store.revoke_token(token_id, access.clock_ms()))


@admin_router.get("/access-events", response_model=list[AccessEventPublic])
def access_events(access: AccessDep, _who: Admin, event: AccessEvent | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[AccessEventPublic]:
    """The access audit trail, newest first: personal data read (who, when, which household), logins slowed
    down, station-bound credentials refused, password resets forced."""
    return [AccessEventPublic(at=ms_to_dt(r.at_ms), event=r.event, actor=r.actor, subject=r.subject,  # type: ignore[arg-type]
                              source=r.source, detail=r.detail)
            for r in access.audit.recent(limit, event.value if event else "")]
