"""Signing in and out, who am I, and (for admins) accounts and API tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response, status
from starlette.concurrency import run_in_threadpool

from dashboards.account_schemas import (
    LoginRequest,
    MePublic,
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
from dashboards.auth import SESSION_COOKIE, Access, Admin, ErrorPublic, SignedIn, get_access
from wanli.errors import Conflict

AccessDep = Annotated[Access, Depends(get_access)]

router = APIRouter(prefix="/api/auth", tags=["access"])
admin_router = APIRouter(prefix="/api", tags=["access"])

_WRONG = "用户名或密码不正确（wrong username or password）"


@router.post("/login", response_model=MePublic,
             responses={401: {"model": ErrorPublic, "description": "wrong username or password"},
                        429: {"model": ErrorPublic, "description": "too many wrong passwords for this username"}})
async def login(access: AccessDep, body: LoginRequest, response: Response) -> MePublic:
    """Sign a person in: sets the HttpOnly session cookie the pages use (machines use API tokens instead)."""
    now = access.clock_ms()
    wait_s = access.throttle.blocked_for_s(body.username, now)
    if wait_s > 0:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"密码错误次数过多，请 {wait_s:.0f} 秒后再试（too many wrong passwords）",
                            headers={"Retry-After": str(int(wait_s) + 1)})
    # argon2 takes tens of milliseconds of CPU: not on the event loop that serves the live screens
    user = await run_in_threadpool(access.store.check_password, body.username, body.password, now)
    if user is None or (user.development_only and not access.development):
        access.throttle.failed(body.username, now)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, _WRONG)
    access.throttle.succeeded(body.username)
    session_id = await run_in_threadpool(access.store.open_session, user, now)
    access.set_session_cookie(response, session_id)
    principal = await run_in_threadpool(access.store.session_principal, session_id, now)
    assert principal is not None
    return MePublic.of(principal)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(access: AccessDep, request: Request, response: Response) -> None:
    """End this browser's session (a no-op without one) and clear its cookie."""
    if session_id := request.cookies.get(SESSION_COOKIE):
        access.store.close_session(session_id)
    access.clear_session_cookie(response)


@router.get("/me", response_model=MePublic)
def me(who: SignedIn) -> MePublic:
    """Who the credentials sent belong to, and their roles (the pages show it; a client checks its token)."""
    return MePublic.of(who)


@router.get("/status", response_model=SessionStatus)
def session_status(access: AccessDep, request: Request) -> SessionStatus:
    """Whether this browser is signed in (never 401: the login page asks it before anyone has signed in)."""
    principal = access.authenticate(None, request.cookies.get(SESSION_COOKIE))
    return SessionStatus(signed_in=principal is not None, me=MePublic.of(principal) if principal else None)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT,
             responses={422: {"model": ErrorPublic, "description": "wrong current password, or a weak new one"}})
async def change_password(access: AccessDep, who: SignedIn, body: PasswordChange) -> None:
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


@admin_router.post("/users", response_model=UserPublic, status_code=status.HTTP_201_CREATED)
def create_user(access: AccessDep, _who: Admin, body: UserCreate) -> UserPublic:
    """A new account for a person, with their roles."""
    return UserPublic.of(access.store.add_user(body.username, body.password, body.roles, access.clock_ms(),
                                               display_name=body.display_name))


@admin_router.patch("/users/{username}", response_model=UserPublic)
def update_user(access: AccessDep, _who: Admin, username: str, body: UserUpdate) -> UserPublic:
    """Change a person's roles or name, disable or enable them, or set a new password."""
    store = access.store
    if body.disabled or (body.roles is not None and Role.ADMIN not in body.roles):
        others = [u for u in store.users() if Role.ADMIN in u.roles and u.disabled_ms is None and u.username != username]
        if Role.ADMIN in store.user(username).roles and not others:
            raise Conflict(f"{username} is the last enabled admin; make another admin first")
    return UserPublic.of(store.update_user(username, access.clock_ms(), roles=body.roles,
                                           display_name=body.display_name, disabled=body.disabled,
                                           password=body.password))


@admin_router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(access: AccessDep, _who: Admin) -> list[TokenPublic]:
    return [TokenPublic.of(t) for t in access.store.tokens()]


@admin_router.post("/tokens", response_model=TokenIssued, status_code=status.HTTP_201_CREATED)
def create_token(access: AccessDep, who: Admin, body: TokenCreate) -> TokenIssued:
    """A token for a machine, with its roles. Its secret is in this answer only: store it at once."""
    now = access.clock_ms()
    expires = now + int(body.expires_in_days * 86_400_000) if body.expires_in_days else None
    token, raw = access.store.create_token(body.name, body.roles, who.actor, now, expires)
    return TokenIssued(**TokenPublic.of(token).model_dump(), token=raw)


@admin_router.delete("/tokens/{token_id}", response_model=TokenPublic)
def revoke_token(access: AccessDep, _who: Admin, token_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> TokenPublic:
    """Revoke a token: refused from its next request on."""
    return TokenPublic.of(access.store.revoke_token(token_id, access.clock_ms()))
