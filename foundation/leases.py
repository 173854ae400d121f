"""Roles held by one instance at a time: leases in the database, with a fencing token.

Any number of instances may run on one PostgreSQL and one broker; they are one service
(docs/scaling.md, "High availability"). The jobs that must run exactly once each have a
**role**:

- ``ingest``: the MQTT sessions of the street's topics (both lanes, one client id each,
  the same on every instance), the rules' state and their clock, the devices' sequence state;
- ``escalation``: the escalation clock (a step due climbs to the next tier) and the system
  faults (the service's own health raised as incidents);
- ``dispatch``: the outbox (stations' dispatches, the webhook) and the notifier (people's
  phones).

A role is a row of ``leases``: who holds it, until when, and a **token** that grows by one each
time the role changes hands (or is taken again after it lapsed). The holder renews it every
``renew_s``; a lease not renewed for ``ttl_s`` may be taken by any other instance. Expiry is
judged by the database's clock (PostgreSQL's ``clock_timestamp()``), so instances' clocks
need not agree. Locally a holder counts its lease from the moment it *asked* for the renewal
(a monotonic clock), less a margin, so it always believes it lost the role before the
database lets anyone else take it: it stops the role's work first.

**Fencing.** A holder that froze (a VM paused, SIGSTOP, a long GC) and wakes up still
believes, for an instant, that it holds its roles. Every write a role makes goes through
``LeaseStore.fence`` in its own transaction: the row must still name this holder and token,
unexpired (``FOR SHARE`` on PostgreSQL, so a takeover waits for the write to commit and
cannot slip in between). A fenced write raises ``Fenced`` and rolls back; nothing it meant
to write lands.

One process runs on a data directory at a time (``InstanceLock`` refuses a second, clearly), and
an instance's default name is its host and data directory: restarted after a crash, it is the
same holder and takes its roles back at once rather than after the TTL.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import BigInteger, Column, Connection, Engine, String, Table, text

from foundation.db import METADATA
from foundation.errors import WanliError
from foundation.service_clock import ClockMs

log = logging.getLogger(__name__)

INGEST, ESCALATION, DISPATCH = "ingest", "escalation", "dispatch"
ROLES = (INGEST, ESCALATION, DISPATCH)

leases_table = Table(
    "leases",
    METADATA,
    Column("role", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("token", BigInteger, nullable=False),  # grows by one each time the role changes hands
    Column("expires_ms", BigInteger, nullable=False),  # by the database's clock
    Column("acquired_ms", BigInteger, nullable=False),
    Column("renewed_ms", BigInteger, nullable=False),
)


class Fenced(WanliError):
    """This instance no longer holds the role it wrote for: the write is rolled back."""

    def __init__(self, role: str, detail: str) -> None:
        super().__init__(f"role {role} is no longer held here: {detail}")
        self.role = role


class AlreadyRunning(WanliError):
    """Another instance already runs on these files."""


def instance_name(data_dir: Path | None = None) -> str:
    """This instance's default name: its host and data directory (one process at a time runs on a data
    directory, ``InstanceLock``; restarted, it is the same holder and renews its leases at once), else its
    host, process and a random part."""
    if data_dir is not None:
        return f"{socket.gethostname()}:{Path(data_dir).resolve()}"[:200]
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class LeaseRow:
    role: str
    holder: str
    token: int
    expires_ms: int
    acquired_ms: int
    renewed_ms: int


@dataclass(frozen=True, slots=True)
class Grant:
    """A role held: its token, and until when (monotonic seconds, this process) it may act on it."""
    role: str
    token: int
    valid_until: float


class LeaseStore:
    """The ``leases`` table. ``clock_ms`` is used only where the database has no clock of its own (SQLite)."""

    def __init__(self, engine: Engine, clock_ms: ClockMs) -> None:
        self._engine = engine
        self._clock_ms = clock_ms
        self._pg = engine.dialect.name == "postgresql"
        self._now = "(extract(epoch from clock_timestamp()) * 1000)::bigint" if self._pg else ":now"

    def _params(self, **values: object) -> dict[str, object]:
        return values if self._pg else {**values, "now": self._clock_ms()}

    def hold(self, role: str, holder: str, ttl_ms: int) -> int | None:
        """Take or renew the role; its token if this holder now has it, else None (held by another)."""
        now = self._now
        taken_over = "leases.holder <> :holder OR leases.expires_ms < " + now
        free = f"leases.holder = :holder OR leases.expires_ms < {now}"
        sql = text(f"""
            INSERT INTO leases (role, holder, token, expires_ms, acquired_ms, renewed_ms)
            VALUES (:role, :holder, 1, {now} + :ttl, {now}, {now})
            ON CONFLICT (role) DO UPDATE SET
                token = CASE WHEN {taken_over} THEN leases.token + 1 ELSE leases.token END,
                acquired_ms = CASE WHEN {taken_over} THEN excluded.renewed_ms ELSE leases.acquired_ms END,
                holder = excluded.holder, expires_ms = excluded.expires_ms, renewed_ms = excluded.renewed_ms
            WHERE {free}
            RETURNING token""")
        with self._engine.begin() as conn:
            row = conn.execute(sql, self._params(role=role, holder=holder, ttl=ttl_ms)).first()
        return None if row is None else int(row[0])

    def release(self, role: str, holder: str, token: int) -> None:
        """Give the role up now (a clean stop): another instance takes it at its next try, not after the TTL."""
        with self._engine.begin() as conn:
            conn.execute(text("UPDATE leases SET expires_ms = 0 WHERE role = :role AND holder = :holder "
                              "AND token = :token"), {"role": role, "holder": holder, "token": token})

    def fence(self, conn: Connection, role: str, holder: str, token: int) -> None:
        """Raise ``Fenced`` unless this holder still holds the role with this token, in ``conn``'s transaction."""
        lock = " FOR SHARE" if self._pg else ""
        row = conn.execute(text(f"SELECT holder, token, expires_ms >= {self._now} FROM leases "
                                f"WHERE role = :role{lock}"), self._params(role=role)).first()
        if row is None or row[0] != holder or int(row[1]) != token or not row[2]:
            detail = "no lease" if row is None else (
                f"held by {row[0]} (token {row[1]})" if row[0] != holder or int(row[1]) != token else "lease expired")
            raise Fenced(role, detail)

    def rows(self) -> tuple[list[LeaseRow], int]:
        """Every lease, and the database's clock now (ms)."""
        with self._engine.connect() as conn:
            now = int(conn.execute(text(f"SELECT {self._now}"), self._params()).scalar_one())
            rows = [LeaseRow(*r) for r in conn.execute(text(
                "SELECT role, holder, token, expires_ms, acquired_ms, renewed_ms FROM leases ORDER BY role"))]
        return rows, now


RoleCallback = Callable[[str, int], None]


class LeaseKeeper:
    """Takes and renews this instance's roles in a thread of its own; tells ``on_gain``/``on_lose``.

    ``on_gain(role, token)`` and ``on_lose(role, token)`` run in a second thread, in order, so a
    role that is slow to start or stop never delays the renewal of the others.
    """

    def __init__(self, store: LeaseStore, holder: str, roles: Sequence[str], *, ttl_s: float, renew_s: float,
                 on_gain: RoleCallback, on_lose: RoleCallback, margin_s: float | None = None) -> None:
        if renew_s * 2 > ttl_s:
            raise ValueError("a lease must be renewed at least twice within its time to live")
        self.store = store
        self.holder = holder
        self.roles = tuple(roles)
        self.ttl_s, self.renew_s = ttl_s, renew_s
        self.margin_s = renew_s / 2 if margin_s is None else margin_s
        self._on_gain, self._on_lose = on_gain, on_lose
        self._grants: dict[str, Grant] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._transitions: list[tuple[str, str, int]] = []  # (gain|lose, role, token), for the second thread
        self._transition_ready = threading.Condition()
        self._transitioner: threading.Thread | None = None
        self.first_round = threading.Event()  # every role has been asked for once
        self.last_error = ""
        self.seen: list[LeaseRow] = []  # the table as last read, and the database's clock then
        self.seen_now_ms = 0

    # -- what the rest of the service asks --

    def grant(self, role: str) -> Grant | None:
        """The role's grant while it is valid here, else None."""
        g = self._grants.get(role)
        return g if g is not None and time.monotonic() < g.valid_until else None

    def holds(self, role: str) -> bool:
        return self.grant(role) is not None

    def remaining_s(self, role: str) -> float:
        """How long this instance may still act on the role without renewing (0: not held)."""
        g = self._grants.get(role)
        return max(0.0, g.valid_until - time.monotonic()) if g is not None else 0.0

    def held(self) -> list[str]:
        return [r for r in self.roles if self.holds(r)]

    def fence(self, role: str) -> Callable[[Connection], None]:
        """A check for the role's writes: raises ``Fenced`` in the transaction unless the role is still held here."""
        def check(conn: Connection) -> None:
            g = self._grants.get(role)
            if g is None or time.monotonic() >= g.valid_until:
                raise Fenced(role, "not held by this instance now")
            self.store.fence(conn, role, self.holder, g.token)
        return check

    # -- the threads --

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
        self._transitioner = threading.Thread(target=self._run_transitions, name="role-transitions", daemon=True)
        self._transitioner.start()
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        """Stop renewing; lose every role (its work stops) and, if ``release``, give the leases up at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            grants, self._grants = dict(self._grants), {}
        for role, g in grants.items():
            self._queue("lose", role, g.token)
        self._queue("quit", "", 0)
        if self._transitioner is not None:
            self._transitioner.join(30)
        if release:
            for role, g in grants.items():
                try:
                    self.store.release(role, self.holder, g.token)
                except Exception:  # the database is away: the lease lapses by itself
                    log.warning("could not release role %s", role, exc_info=True)

    def _run(self) -> None:
        while True:
            self.round()
            self.first_round.set()
            if self._stop.wait(self.renew_s):
                return

    def round(self) -> None:
        """One renewal of every role (public for tests that drive it step by step)."""
        for role in self.roles:
            if self._stop.is_set():
                return
            asked = time.monotonic()
            old = self._grants.get(role)
            if old is not None and asked >= old.valid_until:  # lapsed here (frozen, or the database away)
                self._lose(role, old, "the lease lapsed before it was renewed")
                old = None
            try:
                token = self.store.hold(role, self.holder, int(self.ttl_s * 1000))
                self.last_error = ""
            except Exception as exc:  # the database is away: keep what is still valid, try again next round
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("lease %s: could not renew: %s", role, self.last_error)
                continue
            if token is None:
                if old is not None:
                    self._lose(role, old, "another instance holds it")
                continue
            grant = Grant(role, token, asked + self.ttl_s - self.margin_s)
            if old is not None and old.token != token:  # lapsed in the database and taken again: a new epoch
                self._lose(role, old, "taken again after it lapsed")
                old = None
            with self._lock:
                self._grants[role] = grant
            if old is None:
                log.warning("role %s taken by %s (token %d)", role, self.holder, token)
                self._queue("gain", role, token)
        try:
            self.seen, self.seen_now_ms = self.store.rows()
        except Exception:  # only for display
            pass

    def _lose(self, role: str, grant: Grant, why: str) -> None:
        with self._lock:
            if self._grants.get(role) is grant:
                del self._grants[role]
        log.error("role %s lost by %s (token %d): %s", role, self.holder, grant.token, why)
        self._queue("lose", role, grant.token)

    def _queue(self, what: str, role: str, token: int) -> None:
        with self._transition_ready:
            self._transitions.append((what, role, token))
            self._transition_ready.notify()

    def _run_transitions(self) -> None:
        while True:
            with self._transition_ready:
                while not self._transitions:
                    self._transition_ready.wait()
                what, role, token = self._transitions.pop(0)
            if what == "quit":
                return
            try:
                if what == "gain":
                    if self.grant(role) is not None and self._grants[role].token == token:
                        self._on_gain(role, token)
                else:
                    self._on_lose(role, token)
            except Exception:
                log.exception("role %s: %s failed", role, what)


class InstanceLock:
    """An exclusive lock on a directory's ``wanli.lock``: a second instance on the same files is refused."""

    def __init__(self, directories: Iterable[Path]) -> None:
        self._files = []
        for directory in dict.fromkeys(Path(d).resolve() for d in directories):
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / "wanli.lock"
            f = open(path, "a+")  # noqa: SIM115 - held open for the life of the process
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                who = f.read().strip() or "another process"
                f.close()
                self.release()
                raise AlreadyRunning(
                    f"another wanli instance ({who}) already runs on {directory}. Stop it first; to run two "
                    "instances as one service, give each its own WANLI_DATA_DIR and share a PostgreSQL "
                    "database (WANLI_DATABASE_URL; docs/scaling.md, \"High availability\")") from None
            f.seek(0)
            f.truncate()
            f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            f.flush()
            self._files.append(f)

    def release(self) -> None:
        for f in self._files:
            try:
                fcntl.flock(f, fcntl.LOCK_UN)
            finally:
                f.close()
        self._files = []
