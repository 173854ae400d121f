"""What the API shows of accounts, sessions and tokens (never a password hash or a token's digest)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from dashboards.accounts import STATION_PATTERN, USERNAME_PATTERN, ApiToken, Principal, Role, User
from dashboards.password_policy import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH

Station = Annotated[str, Field(pattern=STATION_PATTERN)]
STATIONS_DOC = ("the micro fire stations this credential answers for: a responder sees and answers only incidents "
                "dispatched to them, and the households of their buildings")
from dashboards.schemas import ms_to_dt


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64, examples=["wangfang"])
    password: str = Field(min_length=1, max_length=1024)


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)
    new_password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH,
                              description="at least 12 characters, not a common password, not the username")


class MePublic(BaseModel):
    kind: str = Field(description='"user" (a signed-in person) or "token" (a machine)')
    name: str
    display_name: str
    roles: list[Role]
    actor: str = Field(description="how the audit trail names this caller")
    stations: list[str] = Field(default=[], description=STATIONS_DOC)
    must_change_password: bool = Field(default=False, description="an admin asked for a new password: until it is "
                                                                  "chosen, every other route answers 403")

    @classmethod
    def of(cls, p: Principal) -> MePublic:
        return cls(kind=p.kind, name=p.name, display_name=p.display_name, roles=list(p.roles), actor=p.actor,
                   stations=list(p.stations), must_change_password=p.must_change_password)


class SignedInPublic(MePublic):
    csrf_token: str = Field(description="send it back as `X-CSRF-Token` with every change this session makes")


class SessionStatus(BaseModel):
    signed_in: bool
    me: MePublic | None
    csrf_token: str = Field(default="", description="send it back as `X-CSRF-Token` with every change this "
                                                    "session makes (session.js does)")


class UserPublic(BaseModel):
    username: str
    display_name: str
    roles: list[Role]
    development_only: bool = Field(description="the development account: refused outside development mode")
    created_at: datetime
    disabled_at: datetime | None
    stations: list[str] = Field(default=[], description=STATIONS_DOC)
    must_change_password: bool = False

    @classmethod
    def of(cls, u: User) -> UserPublic:
        return cls(username=u.username, display_name=u.display_name, roles=list(u.roles),
                   development_only=u.development_only, created_at=ms_to_dt(u.created_ms),  # type: ignore[arg-type]
                   disabled_at=ms_to_dt(u.disabled_ms), stations=list(u.stations),
                   must_change_password=u.must_change_password)


class UserCreate(BaseModel):
    username: str = Field(pattern=USERNAME_PATTERN, examples=["wangfang"])
    display_name: str = Field(default="", max_length=100, examples=["值班员 王芳"])
    roles: list[Role] = Field(min_length=1, examples=[["operator"]])
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH,
                          description="at least 12 characters, not a common password, not the username")
    stations: list[Station] = Field(default=[], max_length=20, description=STATIONS_DOC)


class UserUpdate(BaseModel):
    display_name: str | None = Field(default=None, max_length=100)
    roles: list[Role] | None = Field(default=None, min_length=1)
    disabled: bool | None = Field(default=None, description="true: refused from now on, and signed out everywhere")
    password: str | None = Field(default=None, min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH,
                                 description="a new password (signs the person out everywhere)")
    stations: list[Station] | None = Field(default=None, max_length=20, description=STATIONS_DOC)
    must_change_password: bool | None = Field(default=None, description="true: signs the person out everywhere and "
                                              "lets them do nothing but choose a new password at their next sign-in")


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
    stations: list[str] = Field(default=[], description=STATIONS_DOC)

    @classmethod
    def of(cls, t: ApiToken) -> TokenPublic:
        return cls(id=t.id, name=t.name, hint=t.hint, roles=list(t.roles), created_by=t.created_by,
                   created_at=ms_to_dt(t.created_ms), expires_at=ms_to_dt(t.expires_ms),  # type: ignore[arg-type]
                   last_used_at=ms_to_dt(t.last_used_ms), revoked_at=ms_to_dt(t.revoked_ms), stations=list(t.stations))


class TokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["city-platform", "responder-app MFS-XQ"])
    roles: list[Role] = Field(min_length=1, examples=[["viewer"], ["responder"]])
    expires_in_days: float | None = Field(default=None, gt=0, le=3650, description="none: until revoked")
    stations: list[Station] = Field(default=[], max_length=20, description=STATIONS_DOC + " (a responder token "
                                    "needs at least one)", examples=[["mfs-xq"]])


class TokenIssued(TokenPublic):
    token: str = Field(description="the secret: shown only in this answer, send it as `Authorization: Bearer …`")


class AccessEventPublic(BaseModel):
    at: datetime
    event: str = Field(description="personal_data_read, login_delayed, station_refused, password_reset_forced")
    actor: str = Field(description="the credential (or, for a slowed login, the username tried)")
    subject: str = Field(description="the household (building-unit), the username or source, the incident")
    source: str = Field(description="the caller's address")
    detail: str
