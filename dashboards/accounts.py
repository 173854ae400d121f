"""Who may use the API: people's accounts and sessions, machines' tokens, and the roles they hold.

People (operations-centre staff, maintainers, testers) have an account: a username, an argon2
password hash, one or more roles. Signing in opens a *session* whose random id travels in an
HttpOnly cookie. Machines (the city platform, responders' apps, CI) hold an *API token* with
roles of its own, sent as ``Authorization: Bearer …``. Neither a session id nor a token is
stored as such: the database keeps an HMAC-SHA256 digest under the service's secret key, so
a copy of the database alone neither lets anyone in nor lets them check a guess.

``permits`` is the whole rule of who may do what: a role permits what it names, ``admin``
permits everything, and every account may read (``viewer``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    delete,
    insert,
    select,
    update,
)

from dashboards.password_policy import MIN_PASSWORD_LENGTH, password_problem
from foundation.db import METADATA
from foundation.errors import Conflict, Invalid, NotFound

__all__ = ["MIN_PASSWORD_LENGTH"]  # re-exported for the schemas


class Role(StrEnum):
    ADMIN = "admin"  # accounts and tokens, and everything the others may do
    OPERATOR = "operator"  # incident actions and notes (the ops centre's duty staff)
    MAINTAINER = "maintainer"  # devices: register, import, move, retire, credentials
    TESTER = "tester"  # simulated buildings and scenarios
    RESPONDER = "responder"  # responders' apps: acknowledge, arrive, add a note; nothing else
    VIEWER = "viewer"  # reads only (a wall screen, the city platform's reader)

    @property
    def label_zh(self) -> str:
        return _ROLE_ZH[self]


_ROLE_ZH = {Role.ADMIN: "管理员", Role.OPERATOR: "值班员", Role.MAINTAINER: "设备运维", Role.TESTER: "测试员",
            Role.RESPONDER: "处置人员", Role.VIEWER: "只读"}


def permits(roles: Iterable[Role], needed: Role) -> bool:
    held = set(roles)
    return bool(held) and (needed is Role.VIEWER or needed in held or Role.ADMIN in held)


USERNAME_PATTERN = r"^[\w.@-]{1,64}$"  # \w: Chinese names too
STATION_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
TOKEN_PREFIX = "wlt_"

users_table = Table(
    "users", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(100), nullable=False),
    Column("roles", String(200), nullable=False),  # comma-separated Role values
    Column("password_hash", String(200), nullable=False),
    Column("development_only", Boolean, nullable=False),  # the development account: refused outside development mode
    Column("created_ms", BigInteger, nullable=False),
    Column("password_changed_ms", BigInteger, nullable=False),
    Column("disabled_ms", BigInteger, nullable=True),
    # Comma-separated micro fire station ids this person answers for ('' : none; docs/access.md)
    Column("stations", String(400), nullable=False),
    # An admin asked for a new password: until it is chosen, the account may only change it
    Column("must_change_password", Boolean, nullable=False),
)

sessions_table = Table(
    "user_sessions", METADATA,
    Column("digest", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger, nullable=False),
    Index("ix_user_sessions_user", "user_id"),
)

tokens_table = Table(
    "api_tokens", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("hint", String(16), nullable=False),  # the token's first characters, to recognise it in a list
    Column("roles", String(200), nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=True),
    Column("last_used_ms", BigInteger, nullable=True),
    Column("revoked_ms", BigInteger, nullable=True),
    Column("stations", String(400), nullable=False),  # as users.stations
)

# last_seen / last_used are written at most this often per session or token: not a write per request.
_TOUCH_EVERY_MS = 60_000


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    display_name: str
    roles: tuple[Role, ...]
    development_only: bool
    created_ms: int
    disabled_ms: int | None
    stations: tuple[str, ...] = ()
    must_change_password: bool = False


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    name: str
    hint: str
    roles: tuple[Role, ...]
    created_by: str
    created_ms: int
    expires_ms: int | None
    last_used_ms: int | None
    revoked_ms: int | None
    stations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a signed-in person or a machine's token."""

    kind: Literal["user", "token"]
    id: int
    name: str
    display_name: str
    roles: tuple[Role, ...]
    development_only: bool = False
    stations: tuple[str, ...] = ()  # the micro fire stations it answers for (a responder's binding)
    must_change_password: bool = False

    @property
    def actor(self) -> str:
        """How the audit trail and the registry's history name this caller."""
        if self.kind == "token":
            return f"token:{self.name}"
        return f"{self.display_name}（{self.name}）" if self.display_name else self.name

    def may(self, role: Role) -> bool:
        return permits(self.roles, role)

    @property
    def station_bound(self) -> bool:
        """A responder and nothing that acts street-wide: sees and answers only its stations' dispatches."""
        return Role.RESPONDER in self.roles and not (self.may(Role.OPERATOR))


def parse_roles(values: Iterable[str | Role]) -> tuple[Role, ...]:
    roles: set[Role] = set()
    for value in values:
        try:
            roles.add(Role(value))
        except ValueError:
            raise Invalid(f"unknown role {value!r}; roles are: {', '.join(r.value for r in Role)}") from None
    if not roles:
        raise Invalid("at least one role is needed")
    return tuple(r for r in Role if r in roles)  # a stable order


def _roles_text(roles: Iterable[Role]) -> str:
    return ",".join(parse_roles(roles))


def _roles_of(text: str) -> tuple[Role, ...]:
    return tuple(Role(r) for r in text.split(",") if r in Role.__members__.values())


def parse_stations(values: Iterable[str]) -> tuple[str, ...]:
    stations = tuple(dict.fromkeys(v.strip() for v in values if v.strip()))
    for station in stations:
        if not re.fullmatch(STATION_PATTERN, station):
            raise Invalid(f"station id {station!r}: 1 to 64 letters, digits, '.', '_' or '-'")
    if len(",".join(stations)) > 400:
        raise Invalid("too many stations for one account or token")
    return stations


def _stations_of(text: str) -> tuple[str, ...]:
    return tuple(s for s in text.split(",") if s)


class AccountStore:
    """Accounts, sessions and tokens in the service's database (SQLite or PostgreSQL).

    Nothing is cached: a disabled account or a revoked token is refused on its next request,
    even by another process serving the same database.
    """

    def __init__(self, engine: Engine, secret_key: str, *, session_idle_ms: int = 12 * 3_600_000,
                 session_max_ms: int = 30 * 86_400_000) -> None:
        if not secret_key:
            raise Invalid("the secret key for session and token digests is empty")
        self._engine = engine
        self._key = secret_key.encode()
        self.session_idle_ms, self.session_max_ms = session_idle_ms, session_max_ms
        self._hasher = PasswordHasher()
        # Verified against when the username is unknown, so that a wrong name costs as long as a wrong password.
        self._decoy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def _digest(self, raw: str) -> str:
        return hmac.new(self._key, raw.encode(), hashlib.sha256).hexdigest()

    # -- accounts ---------------------------------------------------------------------------------

    def add_user(self, username: str, password: str, roles: Iterable[str | Role], now_ms: int, *,
                 display_name: str = "", development_only: bool = False, stations: Iterable[str] = ()) -> User:
        if not re.fullmatch(USERNAME_PATTERN, username):
            raise Invalid(f"username {username!r}: 1 to 64 letters, digits, '.', '@', '_' or '-'")
        if not development_only:  # the development account's password is public anyway, and refused in production
            _check_password(password, username)
        row = {"username": username, "display_name": display_name.strip()[:100], "roles": _roles_text(roles),
               "password_hash": self._hasher.hash(password), "development_only": development_only,
               "created_ms": now_ms, "password_changed_ms": now_ms, "disabled_ms": None,
               "stations": ",".join(parse_stations(stations)), "must_change_password": False}
        with self._engine.begin() as conn:
            if conn.execute(select(users_table.c.id).where(users_table.c.username == username)).first():
                raise Conflict(f"user {username!r} exists already")
            conn.execute(insert(users_table).values(row))
        return self.user(username)

    def user(self, username: str) -> User:
        with self._engine.connect() as conn:
            row = conn.execute(select(users_table).where(users_table.c.username == username)).mappings().first()
        if row is None:
            raise NotFound("user", username)
        return _user(row)

    def users(self) -> list[User]:
        with self._engine.connect() as conn:
            return [_user(r) for r in conn.execute(select(users_table).order_by(users_table.c.username)).mappings()]

    def exists(self, username: str) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(select(users_table.c.id).where(users_table.c.username == username)).first() is not None

    def count_users(self) -> int:
        with self._engine.connect() as conn:
            return len(conn.execute(select(users_table.c.id)).all())

    def update_user(self, username: str, now_ms: int, *, roles: Iterable[str | Role] | None = None,
                    display_name: str | None = None, disabled: bool | None = None,
                    password: str | None = None, stations: Iterable[str] | None = None,
                    must_change_password: bool | None = None) -> User:
        """Change an account. A new password, disabling it or forcing a reset ends every session it has open."""
        user = self.user(username)
        changes: dict[str, object] = {}
        if stations is not None:
            changes["stations"] = ",".join(parse_stations(stations))
        if must_change_password:
            changes["must_change_password"] = True
        if roles is not None:
            changes["roles"] = _roles_text(roles)
        if display_name is not None:
            changes["display_name"] = display_name.strip()[:100]
        if disabled is not None and disabled != (user.disabled_ms is not None):
            changes["disabled_ms"] = now_ms if disabled else None
        if password is not None:
            _check_password(password, username)
            changes.update(password_hash=self._hasher.hash(password), password_changed_ms=now_ms,
                           development_only=False,  # a password of its own: no longer the development one
                           must_change_password=bool(must_change_password))
        if changes:
            with self._engine.begin() as conn:
                conn.execute(update(users_table).where(users_table.c.id == user.id).values(changes))
                if disabled or password is not None or must_change_password:
                    conn.execute(delete(sessions_table).where(sessions_table.c.user_id == user.id))
        return self.user(username)

    def check_password(self, username: str, password: str, now_ms: int) -> User | None:
        """The account if the password is right and the account enabled; None otherwise (no hint which)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(users_table).where(users_table.c.username == username)).mappings().first()
        encoded = row["password_hash"] if row is not None else self._decoy_hash
        try:
            self._hasher.verify(encoded, password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row["disabled_ms"] is not None:
            return None
        if self._hasher.check_needs_rehash(encoded):  # the library's parameters grew stronger since
            with self._engine.begin() as conn:
                conn.execute(update(users_table).where(users_table.c.id == row["id"])
                             .values(password_hash=self._hasher.hash(password)))
        return _user(row)

    # -- sessions ---------------------------------------------------------------------------------

    def open_session(self, user: User, now_ms: int) -> str:
        """A new session for a signed-in person; returns its id (for the cookie), kept only as a digest."""
        raw = secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            conn.execute(insert(sessions_table).values(digest=self._digest(raw), user_id=user.id, created_ms=now_ms,
                                                       last_seen_ms=now_ms))
            # Housekeeping: this person's expired sessions go (each login tidies its own).
            conn.execute(delete(sessions_table).where(
                sessions_table.c.user_id == user.id,
                (sessions_table.c.last_seen_ms < now_ms - self.session_idle_ms)
                | (sessions_table.c.created_ms < now_ms - self.session_max_ms)))
        return raw

    def session_principal(self, raw: str, now_ms: int) -> Principal | None:
        digest = self._digest(raw)
        s, u = sessions_table, users_table
        with self._engine.connect() as conn:
            row = conn.execute(select(s.c.created_ms, s.c.last_seen_ms, u).join(u, u.c.id == s.c.user_id)
                               .where(s.c.digest == digest)).mappings().first()
        if row is None or row["disabled_ms"] is not None:
            return None
        if now_ms - row["last_seen_ms"] > self.session_idle_ms or now_ms - row["created_ms"] > self.session_max_ms:
            self.close_session(raw)
            return None
        if now_ms - row["last_seen_ms"] > _TOUCH_EVERY_MS:
            with self._engine.begin() as conn:
                conn.execute(update(s).where(s.c.digest == digest).values(last_seen_ms=now_ms))
        return Principal("user", row["id"], row["username"], row["display_name"], _roles_of(row["roles"]),
                         row["development_only"], _stations_of(row["stations"]), bool(row["must_change_password"]))

    def csrf_token(self, session_raw: str) -> str:
        """The token a page sends back in ``X-CSRF-Token`` with its session's changes: derived from the session's
        id under the secret key, so nothing more is stored, and read only by pages of this origin (in a JSON
        answer: a page of another origin, even on this host, cannot read it, as it could a cookie)."""
        return hmac.new(self._key, b"csrf:" + session_raw.encode(), hashlib.sha256).hexdigest()

    def close_session(self, raw: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(sessions_table).where(sessions_table.c.digest == self._digest(raw)))

    # -- API tokens -------------------------------------------------------------------------------

    def create_token(self, name: str, roles: Iterable[str | Role], created_by: str, now_ms: int,
                     expires_ms: int | None = None, stations: Iterable[str] = ()) -> tuple[ApiToken, str]:
        """A new token; returns it and its secret value, which is shown this once and never again."""
        name = name.strip()
        if not 1 <= len(name) <= 100:
            raise Invalid("a token needs a name of 1 to 100 characters (who or what uses it)")
        if expires_ms is not None and expires_ms <= now_ms:
            raise Invalid("the token's expiry is in the past")
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._engine.begin() as conn:
            token_id = conn.execute(insert(tokens_table).values(
                name=name, digest=self._digest(raw), hint=raw[:len(TOKEN_PREFIX) + 4], roles=_roles_text(roles),
                created_by=created_by[:100], created_ms=now_ms, expires_ms=expires_ms, last_used_ms=None,
                revoked_ms=None, stations=",".join(parse_stations(stations)))).inserted_primary_key[0]  # type: ignore[index]
        return self.token(token_id), raw

    def token(self, token_id: int) -> ApiToken:
        with self._engine.connect() as conn:
            row = conn.execute(select(tokens_table).where(tokens_table.c.id == token_id)).mappings().first()
        if row is None:
            raise NotFound("token", token_id)
        return _token(row)

    def tokens(self) -> list[ApiToken]:
        with self._engine.connect() as conn:
            return [_token(r) for r in conn.execute(select(tokens_table).order_by(tokens_table.c.id)).mappings()]

    def revoke_token(self, token_id: int, now_ms: int) -> ApiToken:
        token = self.token(token_id)
        if token.revoked_ms is None:
            with self._engine.begin() as conn:
                conn.execute(update(tokens_table).where(tokens_table.c.id == token_id).values(revoked_ms=now_ms))
        return self.token(token_id)

    def token_principal(self, raw: str, now_ms: int) -> Principal | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(tokens_table).where(tokens_table.c.digest == self._digest(raw))).mappings().first()
        if row is None or row["revoked_ms"] is not None or (row["expires_ms"] is not None and row["expires_ms"] <= now_ms):
            return None
        if row["last_used_ms"] is None or now_ms - row["last_used_ms"] > _TOUCH_EVERY_MS:
            with self._engine.begin() as conn:
                conn.execute(update(tokens_table).where(tokens_table.c.id == row["id"]).values(last_used_ms=now_ms))
        return Principal("token", row["id"], row["name"], "", _roles_of(row["roles"]), False,
                         _stations_of(row["stations"]))


def _check_password(password: str, username: str) -> None:
    if (problem := password_problem(password, username)) is not None:
        raise Invalid(problem)


def _user(r) -> User:  # type: ignore[no-untyped-def]
    return User(r["id"], r["username"], r["display_name"], _roles_of(r["roles"]), bool(r["development_only"]),
                r["created_ms"], r["disabled_ms"], _stations_of(r["stations"]), bool(r["must_change_password"]))


def _token(r) -> ApiToken:  # type: ignore[no-untyped-def]
    return ApiToken(r["id"], r["name"], r["hint"], _roles_of(r["roles"]), r["created_by"], r["created_ms"],
                    r["expires_ms"], r["last_used_ms"], r["revoked_ms"], _stations_of(r["stations"]))
