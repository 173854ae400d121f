"""What the API shows of accounts, sessions and tokens (never a password hash or a token's digest)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from dashboards.accounts import MIN_PASSWORD_LENGTH, USERNAME_PATTERN, ApiToken, Principal, Role, User
from dashboards.schemas import ms_to_dt


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64, examples=["wangfang"])
    password: str = Field(min_length=1, max_length=1024)


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)


class MePublic(BaseModel):
    kind: str = Field(description='"user" (a signed-in person) or "token" (a machine)')
    name: str
    display_name: str
    roles: list[Role]
    actor: str = Field(description="how the audit trail names this caller")

    @classmethod
    def of(cls, p: Principal) -> MePublic:
        return cls(kind=p.kind, name=p.name, display_name=p.display_name, roles=list(p.roles), actor=p.actor)


class SessionStatus(BaseModel):
    signed_in: bool
    me: MePublic | None


class UserPublic(BaseModel):
    username: str
    display_name: str
    roles: list[Role]
    development_only: bool = Field(description="the development account: refused outside development mode")
    created_at: datetime
    disabled_at: datetime | None

    @classmethod
    def of(cls, u: User) -> UserPublic:
        return cls(username=u.username, display_name=u.display_name, roles=list(u.roles),
                   development_only=u.development_only, created_at=ms_to_dt(u.created_ms),  # type: ignore[arg-type]
                   disabled_at=ms_to_dt(u.disabled_ms))


class UserCreate(BaseModel):
    username: str = Field(pattern=USERNAME_PATTERN, examples=["wangfang"])
    display_name: str = Field(default="", max_length=100, examples=["值班员 王芳"])
    roles: list[Role] = Field(min_length=1, examples=[["operator"]])
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)


class UserUpdate(BaseModel):
    display_name: str | None = Field(default=None, max_length=100)
    roles: list[Role] | None = Field(default=None, min_length=1)
    disabled: bool | None = Field(default=None, description="true: refused from now on, and signed out everywhere")
    password: str | None = Field(default=None, min_length=MIN_PASSWORD_LENGTH, max_length=1024,
                                 description="a new password (signs the person out everywhere)")


class TokenPublic(BaseModel):
    id: int
    name: str
    hint: str = Field(description="the token's first characters, to recognise it")
    roles: list[Role]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, t: ApiToken) -> TokenPublic:
        return cls(id=t.id, name=t.name, hint=t.hint, roles=list(t.roles), created_by=t.created_by,
                   created_at=ms_to_dt(t.created_ms), expires_at=ms_to_dt(t.expires_ms),  # type: ignore[arg-type]
                   last_used_at=ms_to_dt(t.last_used_ms), revoked_at=ms_to_dt(t.revoked_ms))


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["city-platform", "responder-app MFS-XQ"])
    roles: list[Role] = Field(min_length=1, examples=[["viewer"], ["responder"]])
    expires_in_days: float | None = Field(default=None, gt=0, le=3650, description="none: until revoked")


class TokenIssued(TokenPublic):
    token: str = Field(description="the secret: shown only in this answer, send it as `Authorization: Bearer …`")
