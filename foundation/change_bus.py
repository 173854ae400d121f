"""What one instance changes, the others hear of within a second: PostgreSQL LISTEN/NOTIFY.

Each instance keeps some of the database in memory (the device registry, the active incidents,
the notification routing). A change is announced **inside the transaction that makes it**
(``pg_notify`` is delivered only on commit, and never for a rollback) on a channel per kind of
thing, naming what changed; every other instance reads those rows again. A payload too long
for a notification says "everything". An instance whose listening connection broke reloads
everything of every channel once it is back (it may have missed notices meanwhile): the rule
of the bus is that a cache is never trusted past a reconnect.

One interface, two implementations: ``PostgresChangeBus`` for a database shared by instances,
``LocalChangeBus`` (announces nothing) for SQLite, where one instance is the whole service.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from sqlalchemy import Connection, Engine, text

from foundation.background import Backoff

log = logging.getLogger(__name__)

DEVICES, INCIDENTS, NOTIFY_ROUTING, POLICIES = "wanli_devices", "wanli_incidents", "wanli_notify", "wanli_policies"
NOTICES = "wanli_notices"  # an incident's notices went (the dispatcher's instance tells the others' screens)
MAX_PAYLOAD = 7000  # PostgreSQL's limit is 8000 bytes
EVERYTHING = "*"

Reload = Callable[[set[str] | None], None]  # the ids that changed, or None: everything


class ChangeBus(Protocol):
    origin: str
    shared: bool  # other instances may change the database

    def announce(self, conn: Connection, channel: str, ids: Iterable[str]) -> None:
        """Tell the other instances, when ``conn``'s transaction commits, that these rows changed."""

    def subscribe(self, channel: str, reload: Reload) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class LocalChangeBus:
    """One instance: nobody to tell."""

    origin = "local"
    shared = False

    def announce(self, conn: Connection, channel: str, ids: Iterable[str]) -> None:
        pass

    def subscribe(self, channel: str, reload: Reload) -> None:
        pass

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def encode(origin: str, ids: Iterable[str]) -> str:
    body = json.dumps(sorted(set(ids)), separators=(",", ":"))
    payload = f"{origin}|{body}"
    return payload if len(payload.encode()) <= MAX_PAYLOAD else f"{origin}|{EVERYTHING}"


def decode(payload: str) -> tuple[str, set[str] | None]:
    """(origin, ids or None for everything); a payload that cannot be read means everything."""
    origin, _, body = payload.partition("|")
    if body == EVERYTHING:
        return origin, None
    try:
        ids = json.loads(body)
        return origin, {str(i) for i in ids} if isinstance(ids, list) else None
    except ValueError:
        return origin, None


class PostgresChangeBus:
    """LISTEN on a connection of its own (psycopg, autocommit), in a thread; reconnects with a full reload."""

    POLL_S = 0.2
    shared = True

    def __init__(self, engine: Engine, origin: str) -> None:
        self.origin = origin
        url = engine.url.set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._reloads: dict[str, list[Reload]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()

    def announce(self, conn: Connection, channel: str, ids: Iterable[str]) -> None:
        ids = list(ids)
        if ids:
            conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                         {"channel": channel, "payload": encode(self.origin, ids)})

    def subscribe(self, channel: str, reload: Reload) -> None:
        self._reloads.setdefault(channel, []).append(reload)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="change-bus", daemon=True)
        self._thread.start()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        import psycopg  # the driver of the PostgreSQL URL (pyproject's dependency)

        first = True
        backoff = Backoff(0.5, 5.0)
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    for channel in self._reloads:
                        conn.execute(f'LISTEN "{channel}"')
                    self._connected.set()
                    backoff.reset()
                    if not first:  # notices may have been missed while away: read everything again
                        log.warning("change bus: listening again; reloading every cache")
                        for channel in self._reloads:
                            self._deliver(channel, None)
                    first = False
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=self.POLL_S, stop_after=None):
                            self._heard(note.channel, note.payload)
                            if self._stop.is_set():
                                break
                        conn.execute("SELECT 1")  # a broken connection shows here, not only on the next notice
            except Exception as exc:
                self._connected.clear()
                if self._stop.is_set():
                    return
                delay = backoff.next_s()
                log.warning("change bus: connection lost (%s: %s); again in %.1f s", type(exc).__name__, exc, delay)
                first = False
                self._stop.wait(delay)
        self._connected.clear()

    def _heard(self, channel: str, payload: str) -> None:
        origin, ids = decode(payload)
        if origin == self.origin:
            return  # this instance made the change and already has it
        self._deliver(channel, ids)

    def _deliver(self, channel: str, ids: set[str] | None) -> None:
        for reload in self._reloads.get(channel, ()):
            began = time.monotonic()
            try:
                reload(ids)
            except Exception:  # a cache that could not be reloaded: everything, at the next notice or reconnect
                log.exception("change bus: reloading %s failed", channel)
            took = time.monotonic() - began
            if took > 1.0:
                log.warning("change bus: reloading %s took %.1f s", channel, took)
