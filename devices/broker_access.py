"""Who may talk to the broker: per-device credentials kept in step with the registry, confirmed applied.

Registering a device gives it a place; ``issue`` (or ``issue_many``) gives it credentials (a
password shown once, only its hash kept). Retiring a device revokes them. When the service
manages an external Mosquitto (``WANLI_BROKER_AUTH_DIR`` and ``WANLI_BROKER_PID_FILE``), a
change reaches the broker like this:

1. The change is recorded (the credentials table) and *requested*: it gets the next
   generation number and the caller returns at once (the API answers ``access_state:
   pending``). Nothing on a request path writes a file or signals the broker.
2. One writer thread (``broker-access``) takes every generation requested so far together:
   one password file for all of them (ACL first if it changed; with the ``%u`` patterns it
   does not), then one SIGHUP. Changes made at the same moment are coalesced, none is lost.
3. The writer *confirms* the generation: the password file carries a canary account whose
   password is new in every generation, and the writer logs in with it. Mosquitto 2.0 drops
   a SIGHUP that arrives while it is reloading, so until the canary gets in, the writer
   resends SIGHUP (every ``resend_after_s``). A confirmed generation makes every device
   changed in it ``active`` (``can_connect_now``); a retired device's open connection is
   closed by the same reload (Mosquitto re-checks connected clients' logins).
4. A generation not confirmed within ``unconfirmed_after_s`` (10 s) raises the
   ``broker_access_unconfirmed`` condition (``AccessCondition``): ``on_condition`` is called
   with it raised, and again with it cleared once a later attempt is confirmed. The writer
   keeps trying meanwhile.

The fast lane (``overlay``, devices/broker_dynsec.py): with the broker's dynamic-security
plugin loaded, a generation of up to ``overlay_batch_max`` devices does not touch the file at
all. Each change becomes a plugin command (``createClient`` / ``modifyClient`` with the password
just issued, or ``createClient`` without one + ``disableClient`` for a retirement), the plugin's
answers confirm it, and the broker never reloads: a change costs it under a millisecond instead
of a reload of the whole street (75-110 ms of its CPU, more with devices connected). The
password file stays the base and goes on taking the rest: the writer's start and a reconnection
(a restarted broker) when the broker does not serve the table already (``_served_already``: then
they need no reload at all), a larger generation (bulk credentials), a plugin that failed, and the
change that would put the plugin past ``overlay_limit`` clients. After such a file generation
the plugin's clients that disagree with the table (each carries its credential's mark) are
deleted before it is confirmed; past the limit all of them are, between generations (the fold).
A generation is only ever confirmed by what applied it: the plugin's answers or the canary.

The broker itself (``BrokerControl``) and the canary's login (``CanaryLogin``) are seams:
``PidFileBroker`` / ``MqttCanaryLogin`` are the real ones.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from devices.broker_dynsec import (
    Command,
    DynamicSecurity,
    create_client,
    credential_mark,
    delete_client,
    disable_client,
    enable_client,
    modify_client,
)
from devices.credentials import (
    BrokerAuthFiles,
    CredentialStore,
    DeviceTopicOwner,
    ServiceAccount,
    mosquitto_password_hash,
    password_line,
    render_acl,
    verify_mosquitto_password,
)
from devices.registry import DeviceRecord, DeviceRegistry, Lifecycle
from foundation.background import Backoff
from foundation.errors import Conflict, StoreUnavailable
from foundation.service_clock import ClockMs

log = logging.getLogger(__name__)

CANARY_USERNAME = "wanli-access-canary"  # no ACL rights at all: it only proves a reload happened
CONDITION_NAME = "broker_access_unconfirmed"


class AccessState(StrEnum):
    """Where a device's broker access stands, as the API shows it."""

    NONE = "none"                # never given credentials
    PENDING = "pending"          # issued; the broker has not confirmed it yet
    ACTIVE = "active"            # issued, and the broker confirmed it: the device can connect now
    UNCONFIRMED = "unconfirmed"  # issued, and the broker has not confirmed it for longer than the limit
    REVOKING = "revoking"        # revoked (retired); the broker still admits it until it confirms
    REVOKED = "revoked"          # revoked, and the broker confirmed it: refused
    UNMANAGED = "unmanaged"      # the service does not manage the broker: hand the credentials over yourself


@dataclass(frozen=True, slots=True)
class IssuedCredentials:
    device_id: str
    username: str
    password: str
    publish_filter: str
    generation: int = 0  # the broker generation that carries them (0: the broker is not managed)


@dataclass(frozen=True, slots=True)
class AccessCondition:
    """``broker_access_unconfirmed``: a change the broker has not confirmed within the limit (a system incident)."""

    raised: bool
    generation: int        # the oldest generation still unconfirmed (when raised), else the one that cleared it
    since_ms: int          # when that generation was requested
    detail: str
    name: str = CONDITION_NAME


@dataclass(frozen=True, slots=True)
class DeviceAccess:
    state: AccessState
    can_connect_now: bool | None  # None: unknown (the broker is not managed here)
    generation: int = 0


class BrokerControl(Protocol):
    def reload(self) -> None:
        """Ask the broker to re-read its password and ACL files."""


class CanaryLogin(Protocol):
    def try_login(self, username: str, password: str, timeout_s: float) -> bool:
        """True when the broker accepts this login now."""


class PidFileBroker:
    """The Mosquitto whose pid is in ``pid_file``: SIGHUP makes it reload (same host or shared pid namespace)."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file

    def reload(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError) as exc:
            raise StoreUnavailable("mosquitto", f"cannot read its pid from {self.pid_file}: {exc}") from exc
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            raise StoreUnavailable("mosquitto", f"cannot signal pid {pid} from {self.pid_file}: {exc}") from exc


class MqttCanaryLogin:
    """Logs in to the broker with paho (MQTT 3.1.1, clean session) and disconnects at once."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def try_login(self, username: str, password: str, timeout_s: float) -> bool:
        from foundation.mqtt import Client, new_client

        answered = threading.Event()
        accepted: list[bool] = []

        def on_connect(client: Client, userdata: object, flags: object, reason: object, props: object) -> None:
            accepted.append(not getattr(reason, "is_failure", True))
            answered.set()

        client = new_client(username, username=username, password=password, reconnect_on_failure=False)
        client.on_connect = on_connect
        deadline = time.monotonic() + timeout_s
        try:
            client.connect(self.host, self.port, keepalive=10)
            while not answered.is_set() and time.monotonic() < deadline:
                client.loop(timeout=0.02)
            return bool(accepted and accepted[0])
        except OSError:
            return False
        finally:
            if accepted and accepted[0]:
                client.disconnect()  # paho closes its socket once the DISCONNECT is written
                client.loop(timeout=0.01)
            sock = client.socket()
            if sock is not None:
                sock.close()  # refused or unanswered: nothing to say to the broker


@dataclass
class _Progress:
    """What the writer has been asked for and what the broker has confirmed (guarded by the writer's condition)."""

    requested: int = 0
    written: int = 0
    confirmed: int = 0
    requested_ms: dict[int, int] = field(default_factory=dict)  # unconfirmed generation -> when requested
    device_generation: dict[str, int] = field(default_factory=dict)
    condition: AccessCondition | None = None


def changed_logins(after: Mapping[str, str | None], before: Mapping[str, str | None]) -> set[str]:
    """Logins whose plugin client a generation creates or changes."""
    return {login for login, mark in after.items() if login not in before or before[login] != mark}


class BrokerAccess:
    def __init__(self, registry: DeviceRegistry, store: CredentialStore, clock_ms: ClockMs, *,
                 files: BrokerAuthFiles | None = None, pid_file: Path | None = None,
                 service_accounts: Mapping[ServiceAccount, str] | None = None,
                 broker: BrokerControl | None = None, canary: CanaryLogin | None = None,
                 unconfirmed_after_s: float = 10.0, resend_after_s: float = 0.5,
                 on_condition: Callable[[AccessCondition], None] | None = None,
                 overlay: DynamicSecurity | None = None, overlay_limit: int = 5000,
                 overlay_batch_max: int = 250) -> None:
        self._registry, self._store, self._clock_ms = registry, store, clock_ms
        self._files = files
        self._broker = broker if broker is not None else (PidFileBroker(pid_file) if pid_file is not None else None)
        self._canary = canary
        self._accounts = dict(service_accounts or {})
        self._unconfirmed_after_s, self._resend_after_s = unconfirmed_after_s, resend_after_s
        self._on_condition = [on_condition] if on_condition else []
        self._changed = threading.Condition()
        self._progress = _Progress()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_acl = ""
        # device id -> (its hash, street, kind, its checked password-file line): a generation re-checks only what
        # changed since the last (at 50,000 devices, checking every line again took 0.4 s, building owners 1 s)
        self._lines: dict[str, tuple[str, str, str, str]] = {}
        # The unrevoked hashes as the last generation wrote them, and which devices changed since: a generation
        # reads only those from the database (the whole table when ``_reread_all``: the first, ``sync``, a failure).
        self._hashes: dict[str, str] = {}
        self._changed_ids: set[str] = set()
        self._reread_all = True
        # The fast lane: the plugin's clients as the writer made them or last listed them, the admin connection's
        # epoch they belong to (None: unknown, list them after the next file generation), and the passwords just
        # issued (device id -> candidates, newest last; in memory only until the writer takes them).
        self._overlay = overlay
        self._overlay_limit, self._overlay_batch_max = overlay_limit, overlay_batch_max
        self._overlay_clients: dict[str, str | None] = {}  # login -> its credential's mark, None when disabled
        self._doomed: dict[str, None] = {}  # clients to delete between generations, a message at a time (the fold)
        self._overlay_epoch: int | None = None
        self._overlay_stale = False  # a fold failed: the plugin may hold clients the file does not agree with
        self._overlay_retry_at = 0.0
        self._overlay_backoff = Backoff(5.0, 300.0)  # while the plugin does not answer; a broker without it: rarely
        self._passwords: dict[str, list[str]] = {}
        self._file_pending = False  # a file was written whose reload the canary has not confirmed yet
        if overlay is not None:
            account, password = overlay.account()
            self._accounts[account] = password
            overlay.on_connected = self._on_overlay_connected
        registry.subscribe(self._on_registry_change)

    @property
    def manages_broker(self) -> bool:
        return self._files is not None and self._broker is not None

    # -- the hook for system incidents

    def on_condition(self, callback: Callable[[AccessCondition], None]) -> None:
        """Call ``callback`` when ``broker_access_unconfirmed`` is raised and when it clears."""
        self._on_condition.append(callback)

    @property
    def condition(self) -> AccessCondition | None:
        """The raised ``broker_access_unconfirmed`` condition, or None while the broker keeps up."""
        with self._changed:
            cond = self._progress.condition
        return cond if cond is not None and cond.raised else None

    # -- changes

    def issue(self, device_id: str) -> IssuedCredentials:
        """New credentials for an active device (rotating any it had); the password is shown this once.

        Returns once the change is recorded and requested; the broker applies it within a second
        (``access(device_id)`` tells when).
        """
        return self.issue_many([device_id])[0]

    def issue_many(self, device_ids: Sequence[str]) -> list[IssuedCredentials]:
        """Credentials for many active devices at once: one transaction, one broker generation."""
        records = [self._registry.get(device_id) for device_id in dict.fromkeys(device_ids)]
        retired = [r.device_id for r in records if r.lifecycle is not Lifecycle.ACTIVE]
        if retired:
            raise Conflict(f"device {', '.join(retired[:5])}{' …' if len(retired) > 5 else ''} is retired; "
                           "register it again before giving it credentials")
        owners = [DeviceTopicOwner(r.street_id, r.kind, r.device_id) for r in records]
        passwords = self._store.issue_many([o.device_id for o in owners], self._clock_ms())
        generation = self._request([o.device_id for o in owners], passwords)
        return [IssuedCredentials(o.device_id, o.username, passwords[o.device_id], o.publish_filter, generation)
                for o in owners]

    def _on_registry_change(self, records: Sequence[DeviceRecord]) -> None:
        retired = {r.device_id for r in records if r.lifecycle is Lifecycle.RETIRED}
        if not retired:
            return  # registrations and moves change no login (street and kind stay)
        holding = {d for d in retired if self._store.state(d) == "issued"}
        for device_id in sorted(holding):
            self._store.revoke(device_id, self._clock_ms())
        if holding:
            self._request(sorted(holding))

    def sync(self, timeout_s: float = 10.0) -> bool:
        """Request a generation from the registry as it is now and wait until the broker confirms it."""
        if not self.manages_broker:
            return True
        return self.wait_confirmed(self._request([]), timeout_s)

    # -- what the API shows

    def access(self, device_id: str) -> DeviceAccess:
        stored = self._store.state(device_id)
        if stored == "none":
            return DeviceAccess(AccessState.NONE, False)
        if not self.manages_broker:
            return DeviceAccess(AccessState.UNMANAGED, None)
        with self._changed:
            progress = self._progress
            generation = progress.device_generation.get(device_id, 0)
            applied = generation <= progress.confirmed
            late = progress.condition is not None and progress.condition.raised
        if stored == "revoked":
            return DeviceAccess(AccessState.REVOKED if applied else AccessState.REVOKING, not applied, generation)
        if applied:
            return DeviceAccess(AccessState.ACTIVE, True, generation)
        return DeviceAccess(AccessState.UNCONFIRMED if late else AccessState.PENDING, False, generation)

    def generations(self) -> tuple[int, int]:
        """(requested, confirmed) generation numbers."""
        with self._changed:
            return self._progress.requested, self._progress.confirmed

    def wait_confirmed(self, generation: int, timeout_s: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._progress.confirmed >= generation, timeout=timeout_s)

    # -- the writer

    def start(self) -> None:
        """Start the writer thread and request the first generation (the registry as it is)."""
        if not self.manages_broker or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="broker-access", daemon=True)
        self._thread.start()
        self._request([])

    def stop(self) -> None:
        self._stop.set()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._overlay is not None:
            self._overlay.close()

    def _request(self, device_ids: Iterable[str], passwords: Mapping[str, str] | None = None) -> int:
        if not self.manages_broker:
            return 0
        with self._changed:
            progress = self._progress
            progress.requested += 1
            generation = progress.requested
            progress.requested_ms[generation] = self._clock_ms()
            ids = list(device_ids)
            for device_id in ids:
                progress.device_generation[device_id] = generation
            if self._overlay is not None and passwords:
                for device_id, password in passwords.items():
                    self._passwords.setdefault(device_id, []).append(password)
            self._changed_ids.update(ids)
            if not ids:
                self._reread_all = True  # sync(), start(): the registry and the table as they are now
            self._changed.notify_all()
        if self._thread is None:
            log.debug("broker access: generation %d requested before the writer started", generation)
        return generation

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._changed:
                self._changed.wait_for(lambda: self._stop.is_set()
                                       or self._progress.requested > self._progress.confirmed
                                       or bool(self._doomed and self._overlay_usable(0)), timeout=1.0)
                if self._stop.is_set():
                    return
                target = self._progress.requested
                if target <= self._progress.confirmed:
                    if self._overlay_stale and time.monotonic() >= self._overlay_retry_at:
                        fold = True
                    elif self._doomed and self._overlay_usable(0):
                        fold = False
                    else:
                        continue
                    pending = False
                else:
                    pending = True
            if not pending:
                if fold:
                    self._reconcile(before_confirming=True) and self._reconcile(before_confirming=False)
                else:
                    self._delete_some()  # a generation requested meanwhile goes first: one message at a time
                continue
            try:
                self._apply(target)
            except Exception:  # the writer must outlive any one failure: it is how revocations get through
                log.exception("broker access: generation %d failed; retrying", target)
                self._check_overdue()
                self._stop.wait(min(self._resend_after_s * 2, 2.0))

    def _apply(self, target: int) -> None:
        """Every change requested up to ``target``: through the plugin when it can take them, else the file."""
        started = time.monotonic()
        with self._changed:
            changed, reread_all = self._changed_ids, self._reread_all
            self._changed_ids, self._reread_all = set(), False
            passwords, self._passwords = self._passwords, {}
        try:
            previous = {device_id: self._lines.get(device_id) for device_id in changed}
            if reread_all:
                self._lines = self._all_lines()
            else:
                self._update_lines(changed)
        except BaseException:
            with self._changed:
                self._reread_all = True  # what was taken is not lost: the next pass reads everything
            raise
        if reread_all and self._served_already():
            self._confirm(target)
            log.info("broker access: generation %d confirmed without a reload in %.0f ms: the broker already serves "
                     "the table (its password file, with the plugin's %d clients over it)", target,
                     (time.monotonic() - started) * 1000, len(self._overlay_clients))
            return
        if not reread_all and self._overlay_usable(len(changed)):
            try:
                if self._apply_overlay(changed, previous, passwords):
                    self._confirm(target)
                    log.info("broker access: generation %d confirmed by the dynamic-security plugin in %.0f ms "
                             "(%d devices, %d clients in the plugin)", target, (time.monotonic() - started) * 1000,
                             len(changed), len(self._overlay_clients))
                    return
            except StoreUnavailable as exc:
                log.warning("broker access: generation %d through the file instead: %s", target, exc)
                self._overlay_epoch = None  # what the plugin holds is unknown now: fold it into the file
        self._apply_file(target, started)

    @property
    def fast_lane_clients(self) -> int:  # (the fold's clients count until deleted)
        """How many clients the writer has given the dynamic-security plugin since the last fold."""
        return len(self._overlay_clients)

    @property
    def fast_lane_ready(self) -> bool:
        """True when the next small change goes through the dynamic-security plugin (no reload)."""
        return self._overlay_usable(0)

    def _overlay_usable(self, changes: int) -> bool:
        overlay = self._overlay
        return (overlay is not None and not self._file_pending and not self._overlay_stale
                and self._overlay_epoch is not None and overlay.ready and overlay.epoch == self._overlay_epoch
                and changes <= self._overlay_batch_max)

    def _apply_overlay(self, changed: set[str], previous: Mapping[str, tuple[str, str, str, str] | None],
                       passwords: Mapping[str, list[str]]) -> bool:
        """The plugin's commands for ``changed``, sent and answered; False when only the file can carry them.

        Each client the writer gives the plugin carries, as its text description, the fingerprint of the
        credential (the table's hash) its password belongs to: whoever reads the plugin later (this writer after a
        restart) can tell a client that agrees with the table from one that does not, without any password.
        """
        assert self._overlay is not None
        commands: list[Command] = []
        after = dict(self._overlay_clients)
        for device_id in sorted(changed):
            now, before = self._lines.get(device_id), previous.get(device_id)
            if now is not None:  # active, holding credentials: the plugin decides its login with the new password
                login = DeviceTopicOwner(now[1], now[2], device_id).username
                password = next((p for p in reversed(passwords.get(device_id, ()))
                                 if verify_mosquitto_password(p, now[0])), None)
                if password is None:
                    return False  # only its hash is known here (issued before this process started): the file
                mark = credential_mark(now[0])
                if login not in after:
                    commands.append(create_client(login, password, mark))
                else:
                    commands.append(modify_client(login, password, mark))  # closes its connections, as a rotation should
                    if after[login] is None:
                        commands.append(enable_client(login))
                after[login] = mark
                continue
            login = self._login_of(device_id, before)
            if login is None:
                continue  # the broker never admitted it
            if login not in after:
                if before is None:
                    continue  # neither the file nor the plugin admits it
                commands += [create_client(login), disable_client(login)]  # refused, its connections closed
            elif after[login] is not None:
                commands.append(disable_client(login))
            after[login] = None
        if len(after) - len(self._doomed.keys() - changed_logins(after, self._overlay_clients)) > self._overlay_limit:
            return False  # the file takes them all (the plugin's clients are deleted after its reload)
        self._overlay.run(commands, per_message=self._per_message())
        for login in [login for login in self._doomed if after.get(login) != self._overlay_clients.get(login)]:
            del self._doomed[login]  # changed again: the plugin keeps deciding it
        self._overlay_clients = after
        return True

    def _per_message(self) -> int:
        """Commands to a message: each costs the broker ~0.5 ms + 2.5 µs per client the plugin holds (it rewrites
        its JSON after every command); a message is handled in one go, so keep one to ~10 ms."""
        return max(1, min(8, int(10 / (0.5 + 0.0025 * len(self._overlay_clients)))))

    def _delete_some(self) -> None:
        """One message of the fold's deletions (between generations: a change never waits behind the fold)."""
        overlay = self._overlay
        assert overlay is not None
        batch = [login for login in self._doomed if login in self._overlay_clients][:self._per_message()]
        try:
            overlay.run([delete_client(login) for login in batch], per_message=len(batch) or 1)
        except StoreUnavailable as exc:
            self._overlay_stale, self._overlay_epoch = True, None  # the next file generation lists them again
            self._overlay_retry_at = time.monotonic() + self._overlay_backoff.next_s()
            log.warning("broker access: the fold's deletions stopped (%d left): %s", len(self._doomed), exc)
            return
        for login in batch:
            self._overlay_clients.pop(login, None)
        for login in [login for login in self._doomed if login not in self._overlay_clients]:
            del self._doomed[login]
        if not self._doomed:
            log.info("broker access: the fold is done: the plugin holds %d clients", len(self._overlay_clients))

    def _login_of(self, device_id: str, line: tuple[str, str, str, str] | None) -> str | None:
        if line is not None:
            return DeviceTopicOwner(line[1], line[2], device_id).username
        try:
            rec = self._registry.get(device_id)
        except Exception:
            return None
        return DeviceTopicOwner(rec.street_id, rec.kind, device_id).username

    def _on_overlay_connected(self, epoch: int) -> None:
        """The admin connection was made again (a broker restart, a lost connection): the file from the table again,
        and the plugin's clients checked against it."""
        if self._overlay_epoch is not None and epoch != self._overlay_epoch:
            log.warning("broker access: the dynamic-security connection was made again; rewriting the password file "
                        "and checking the plugin's clients")
            self._request([])

    def _reconcile(self, *, before_confirming: bool) -> bool:
        """After the file's reload: delete the plugin's clients that would shadow the file wrongly.

        ``before_confirming``: only those that disagree with the table (an enabled client whose credential is not
        the device's current one, a disabled client of a device the file admits again), at once: until they are
        gone, the generation's changes are not all in force. Afterwards (``before_confirming=False``), to be
        deleted between generations: the disabled clients of devices the file no longer holds (nobody is
        connected with them), and every client once the plugin holds half of ``overlay_limit`` (the fold: deleting
        a client closes its connection, so those devices log in again once, now against the file; a change that
        would pass the limit itself goes through the file to make this reload). False when the plugin could not be reached (the writer tries again after 5 s, then less and less often).
        """
        overlay = self._overlay
        if overlay is None:
            return True
        try:
            self._list_overlay(raise_errors=True)
            clients = self._overlay_clients
            if before_confirming:
                doomed = [login for login, mark in clients.items() if self._shadows_wrongly(login, mark)]
                overlay.run([delete_client(login) for login in doomed], per_message=self._per_message())
            else:
                # the rest is deleted between generations, a message at a time (``_delete_some``)
                # the fold rides on a reload that happened anyway (a bulk, a start after changes) once the plugin
                # holds half its limit: a fold of its own, later, would cost a reload more
                later = list(clients) if len(clients) >= max(1, self._overlay_limit // 2) else \
                    [login for login, mark in clients.items() if mark is None]
                self._doomed.update(dict.fromkeys(later))
                doomed = []
        except StoreUnavailable as exc:
            self._overlay_stale, self._overlay_epoch = True, None
            wait_s = self._overlay_backoff.next_s()
            self._overlay_retry_at = time.monotonic() + wait_s
            log.warning("broker access: the dynamic-security plugin's clients were not checked against the password "
                        "file (retrying in %.0f s; changes go through the file meanwhile): %s", wait_s, exc)
            return False
        for login in doomed:
            del clients[login]
            self._doomed.pop(login, None)
        if not before_confirming:
            self._overlay_stale = False
            self._overlay_backoff.reset()
        if doomed or (self._doomed and not before_confirming):
            log.info("broker access: %d dynamic-security clients deleted, %d to delete between generations, "
                     "%d kept (agreeing with the file)", len(doomed), len(self._doomed), len(clients) - len(self._doomed))
        return True

    def _list_overlay(self, *, raise_errors: bool = False) -> bool:
        """The plugin's clients as it holds them now (after a new connection: a restarted broker, a restarted writer).

        False (or ``StoreUnavailable`` with ``raise_errors``) when the plugin cannot be reached or listed."""
        overlay = self._overlay
        assert overlay is not None
        try:
            if self._overlay_epoch is None or overlay.epoch != self._overlay_epoch or not overlay.ready:
                if not overlay.connect(timeout_s=max(1.0, self._resend_after_s * 4)):
                    raise StoreUnavailable("mosquitto", "the dynamic-security admin login is not accepted")
                epoch = overlay.epoch
                held = overlay.list_clients()
                self._overlay_clients = {login: (None if disabled else mark) for login, (disabled, mark)
                                         in held.items()}
                self._overlay_epoch, self._doomed = epoch, {}
        except StoreUnavailable:
            if raise_errors:
                raise
            return False
        return True

    def _shadows_wrongly(self, login: str, mark: str | None) -> bool:
        line = self._lines.get(login.rsplit("/", 1)[-1])
        if line is None or DeviceTopicOwner(line[1], line[2], login.rsplit("/", 1)[-1]).username != login:
            return mark is not None  # the file refuses it: an enabled client would let it in
        return mark != credential_mark(line[0])  # disabled, or another credential than the file's

    def _served_already(self) -> bool:
        """True when the broker already admits exactly what the table says, so a start needs no reload.

        The writer's start, and its reconnection to a restarted broker, read the whole table. A reload then would
        stall a street's broker for a tenth of a second or more (docs/benchmarks.md) only to load the file it loaded
        last time. So before writing, the writer checks: the password file on disk holds every device's current hash
        (or the plugin holds its current credential, or refuses it), the service accounts' passwords, and the canary
        whose password was kept beside it; and the broker lets the canary in with that password, which proves it
        loaded this very file (each file has a canary of its own). Anything else, or any doubt, is a normal file
        generation with its reload.
        """
        files, canary = self._files, self._canary
        if files is None or canary is None:
            return False
        secret, loaded = files.read_canary(), files.read_passwords()
        if secret is None or loaded is None:
            return False
        try:
            canary_hash = loaded.pop(CANARY_USERNAME, None)
            if canary_hash is None or not verify_mosquitto_password(secret, canary_hash):
                return False
            for account, password in self._accounts.items():
                encoded = loaded.pop(account.username, None)
                if encoded is None or not verify_mosquitto_password(password, encoded):
                    return False
        except ValueError:
            return False  # a malformed line: not a file this writer wrote
        accounts = [*self._accounts, ServiceAccount(CANARY_USERNAME)]
        if files.read_acl() != render_acl([], accounts):
            return False
        plugin: Mapping[str, str | None] = {}
        if self._overlay is not None:
            if not self._list_overlay():
                return False
            plugin = self._overlay_clients
        wanted = {line[3].split(":", 1)[0]: line[0] for line in self._lines.values()}
        for login, encoded in wanted.items():
            if login in plugin:
                if plugin[login] != credential_mark(encoded):
                    return False  # disabled there, or another credential
            elif loaded.get(login) != encoded:
                return False
        if any(plugin.get(login, "") is not None for login in loaded.keys() - wanted.keys()):
            return False  # the file admits a device the table does not, and the plugin does not refuse it
        if any(mark is not None for login, mark in plugin.items() if login not in wanted):
            return False
        if not canary.try_login(CANARY_USERNAME, secret, timeout_s=max(0.5, self._resend_after_s * 2)):
            return False  # the broker has another file loaded (or none): write and reload
        self._last_acl = files.read_acl() or ""
        return True

    def _apply_file(self, target: int, started: float) -> None:
        canary_password = secrets.token_urlsafe(24)
        self._file_pending = True  # from here until the canary gets in, only the file may confirm a generation
        if self._files is not None and self._canary is not None:
            self._files.write_canary(canary_password)  # before the file it belongs to (``_served_already``)
        self._write(canary_password)
        with self._changed:
            self._progress.written = target
        written_s = time.monotonic() - started
        while not self._stop.is_set():
            try:
                self._broker.reload()  # type: ignore[union-attr]  # manages_broker
            except StoreUnavailable as exc:
                log.warning("broker access: generation %d: %s", target, exc)
            if self._await_canary(canary_password):
                self._file_pending = False
                self._reconcile(before_confirming=True)
                self._confirm(target)
                log.info("broker access: generation %d confirmed in %.0f ms (files %.0f ms)", target,
                         (time.monotonic() - started) * 1000, written_s * 1000)
                self._reconcile(before_confirming=False)
                return
            self._check_overdue()
            with self._changed:
                newer = self._progress.requested > target
            if newer:
                return  # fold the newer changes in: the next pass writes them all with a new canary

    def _await_canary(self, password: str) -> bool:
        """Poll the canary login until it gets in or ``resend_after_s`` passes (then the caller resends SIGHUP)."""
        if self._canary is None:
            return True  # nothing to confirm with: trust the signal (tests of the writer alone)
        deadline = time.monotonic() + self._resend_after_s
        pause = 0.01
        while not self._stop.is_set():
            if self._canary.try_login(CANARY_USERNAME, password, timeout_s=max(0.05, self._resend_after_s)):
                return True
            if time.monotonic() >= deadline:
                return False
            self._stop.wait(pause)
            pause = min(pause * 2, 0.1)
        return False

    def _write(self, canary_password: str) -> None:
        """The password file for every registered device holding credentials (and the accounts), then the ACL."""
        assert self._files is not None
        accounts = dict(self._accounts)
        if self._canary is not None:
            accounts[ServiceAccount(CANARY_USERNAME)] = canary_password
        lines = self._lines
        text = sorted(line for *_, line in lines.values())
        text += sorted(password_line(a.username, mosquitto_password_hash(pw)) for a, pw in accounts.items())
        acl_text = render_acl([], accounts)  # device logins hold '/', account names cannot: they never clash
        self._files.write("".join(text), acl_text, acl_changed=acl_text != self._last_acl)
        self._last_acl = acl_text

    def _all_lines(self) -> dict[str, tuple[str, str, str, str]]:
        """Every active device holding credentials: its password line (reusing those that did not change)."""
        hashes, previous, lines = self._store.active_hashes(), self._lines, {}
        for rec in self._registry.active():
            encoded = hashes.get(rec.device_id)
            if encoded is not None:
                lines[rec.device_id] = self._line(rec, encoded, previous.get(rec.device_id))
        return lines

    def _update_lines(self, changed: set[str]) -> None:
        """Only the devices changed since the last generation, from the database and the registry."""
        fresh = self._store.active_hashes_of(changed)
        for device_id in changed:
            rec, encoded = self._registry.find(device_id), fresh.get(device_id)
            if rec is None or rec.lifecycle is not Lifecycle.ACTIVE or encoded is None:
                self._lines.pop(device_id, None)  # retired or revoked: out of the file
            else:
                self._lines[device_id] = self._line(rec, encoded, self._lines.get(device_id))

    @staticmethod
    def _line(rec: DeviceRecord, encoded: str, known: tuple[str, str, str, str] | None) -> tuple[str, str, str, str]:
        if known is not None and known[:3] == (encoded, rec.street_id, rec.kind):
            return known
        login = DeviceTopicOwner(rec.street_id, rec.kind, rec.device_id).username  # checks every part
        return (encoded, rec.street_id, rec.kind, password_line(login, encoded))

    def _confirm(self, generation: int) -> None:
        cleared: AccessCondition | None = None
        with self._changed:
            progress = self._progress
            progress.confirmed = max(progress.confirmed, generation)
            for g in [g for g in progress.requested_ms if g <= generation]:
                del progress.requested_ms[g]
            if progress.condition is not None and progress.condition.raised:
                cleared = progress.condition = AccessCondition(
                    False, generation, self._clock_ms(), f"the broker confirmed generation {generation}")
            self._changed.notify_all()
        if cleared is not None:
            log.warning("broker access: %s cleared: generation %d confirmed", CONDITION_NAME, generation)
            self._tell(cleared)

    def _check_overdue(self) -> None:
        raised: AccessCondition | None = None
        now = self._clock_ms()
        with self._changed:
            progress = self._progress
            if progress.requested_ms and not (progress.condition and progress.condition.raised):
                oldest = min(progress.requested_ms)
                since = progress.requested_ms[oldest]
                if now - since >= self._unconfirmed_after_s * 1000:
                    raised = progress.condition = AccessCondition(
                        True, oldest, since,
                        f"the broker has not confirmed generation {oldest} for {(now - since) / 1000:.1f} s "
                        f"(limit {self._unconfirmed_after_s:g} s): devices changed since then may still be refused "
                        "or, if retired, still admitted")
                    self._changed.notify_all()
        if raised is not None:
            log.error("broker access: %s raised generation=%d: %s", CONDITION_NAME, raised.generation, raised.detail)
            self._tell(raised)

    def _tell(self, condition: AccessCondition) -> None:
        for callback in self._on_condition:
            try:
                callback(condition)
            except Exception:
                log.exception("broker access: a %s listener failed", CONDITION_NAME)
