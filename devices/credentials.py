"""Per-device MQTT credentials, and the Mosquitto password and ACL files made from them.

Why: the topic contract gives every device its own topic family
``safety/v1/{street}/{kind}/{device_id}/{class}``, but on an open broker any client may
publish under any id, so one broken or hostile device could raise (or clear) another's
alarms. Each registered device therefore gets its own password, and the broker's ACL lets
it write only under its own street, kind and id, and read only what is addressed to it (a
micro fire station's duty terminal: its own ``dispatch/…/duty`` topic). The platform's
account reads every device topic and writes the dispatch notices.

What, from the inside out:

- ``mosquitto_password_hash`` / ``verify_mosquitto_password``: Mosquitto 2.0's
  PBKDF2-SHA512 format (``$7$<iterations>$<salt>$<hash>``), byte-compatible with
  ``mosquitto_passwd``, so no broker plugin is needed.
- ``CredentialStore``: the ``device_credentials`` table. It keeps only hashes; ``issue``
  returns the plaintext once, for the installer to put into the device.
- ``render_password_file`` / ``render_acl`` / ``render_broker_auth``: pure functions from
  credentials and topic owners to the two files' text. Every value that lands in a file is
  checked to be one token, so a crafted id cannot add a line (a user, a rule) to either.
  A device logs in as ``{street}/{kind}/{device_id}`` (``DeviceTopicOwner.username``), so
  the ACL needs no line per device: one ``pattern write safety/v1/%u/+`` pins street, kind
  and id for all of them (per-device ``user`` blocks made Mosquitto 2.0's reload grow with
  the square of their number: 7 s with 50,000 devices, the broker serving nobody).
- ``BrokerAuthFiles``: writes the files atomically and signals the broker (SIGHUP), which
  makes Mosquitto 2.0 re-read both files and disconnect clients whose password no longer
  checks out.
- ``sync_broker_auth``: all of the above in one call, after a device is added, rotated or
  retired.

Errors: a value that cannot go into the files raises ``ValueError``; revoking credentials
that were never issued raises ``foundation.errors.NotFound``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import signal
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import BigInteger, Column, Engine, String, Table, bindparam, select, update

from devices.drill import DRILL_TOPIC_ROOT, is_drill
from devices.topics import MessageClass, device_topic, dispatch_topic, subscription
from foundation.db import METADATA
from foundation.errors import NotFound, TopicError

log = logging.getLogger(__name__)

# --- Mosquitto's password hash -----------------------------------------------------

# mosquitto_passwd 2.0 defaults (its -H sha512-pbkdf2): PBKDF2-HMAC-SHA512, 101 iterations,
# a 12-byte random salt, the full 64-byte digest, both in standard base64 with padding.
# The broker refuses (drops, with a log line) an entry whose salt is not 12 bytes.
PBKDF2_SHA512_ID = "7"
DEFAULT_ITERATIONS = 101
SALT_BYTES = 12
HASH_BYTES = 64
MAX_ITERATIONS = 999_999_999  # the broker reads the count with atoi(): keep it inside a C int
_ENCODED = re.compile(rf"\${PBKDF2_SHA512_ID}\$([1-9][0-9]{{0,8}})\$([A-Za-z0-9+/]+={{0,2}})\$([A-Za-z0-9+/]+={{0,2}})")

PASSWORD_BYTES = 24  # secrets.token_urlsafe: 192 random bits, 32 URL-safe characters
# A device's password is 192 random bits, not a person's choice: no guessing reaches it, so
# PBKDF2's iterations buy nothing for it, and they cost the broker at every reload. Mosquitto
# 2.0 re-verifies the password of every connected client on reload (mosquitto_security_apply):
# with 4,000 devices connected one reload took 247 ms of broker CPU at 101 iterations and 23 ms
# at 1 (docs/benchmarks.md); the street has 50,615. Service accounts keep DEFAULT_ITERATIONS.
DEVICE_PASSWORD_ITERATIONS = 1


def mosquitto_password_hash(password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS) -> str:
    """``password`` hashed the way ``mosquitto_passwd -b`` does, ready for a password file."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    if len(salt) != SALT_BYTES:
        raise ValueError(f"Mosquitto 2.0 only accepts a {SALT_BYTES}-byte salt, got {len(salt)} bytes")
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be 1 to {MAX_ITERATIONS}, got {iterations}")
    digest = _pbkdf2(password, salt, iterations)
    return f"${PBKDF2_SHA512_ID}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_mosquitto_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded`` (a ``$7$`` hash); ValueError if malformed."""
    iterations, salt, expected = _decode_hash(encoded)
    return hmac.compare_digest(_pbkdf2(password, salt, iterations), expected)


def _pbkdf2(password: str, salt: bytes, iterations: int) -> bytes:
    # The broker hashes strlen(password) bytes: a NUL would silently cut the password short.
    if "\0" in password:
        raise ValueError("a Mosquitto password cannot contain a NUL character")
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, dklen=HASH_BYTES)


def _decode_hash(encoded: str) -> tuple[int, bytes, bytes]:
    match = _ENCODED.fullmatch(encoded)
    if match is None:
        raise ValueError(f"not a Mosquitto PBKDF2-SHA512 hash ($7$<iterations>$<salt>$<hash>): {encoded!r}")
    try:
        salt = base64.b64decode(match[2], validate=True)
        digest = base64.b64decode(match[3], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"bad base64 in Mosquitto hash {encoded!r}: {exc}") from None
    if (len(salt), len(digest)) != (SALT_BYTES, HASH_BYTES):
        raise ValueError(f"Mosquitto hash needs a {SALT_BYTES}-byte salt and {HASH_BYTES}-byte digest: {encoded!r}")
    return int(match[1]), salt, digest


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# --- the credentials table ----------------------------------------------------------

device_credentials = Table(
    "device_credentials",
    METADATA,
    Column("device_id", String(64), primary_key=True),
    Column("password_hash", String(200), nullable=False),
    Column("issued_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger, nullable=True),
)


class CredentialStore:
    """One password per device, stored as its Mosquitto hash only."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def issue(self, device_id: str, now_ms: int) -> str:
        """Create or rotate ``device_id``'s password and return it: the only time it is seen.

        Rotating replaces the old password and lifts a revocation.
        """
        _check_username(device_id)
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        values = {"password_hash": mosquitto_password_hash(password, iterations=DEVICE_PASSWORD_ITERATIONS),
                  "issued_ms": now_ms, "revoked_ms": None}
        with self._engine.begin() as conn:
            rotated = conn.execute(
                update(device_credentials).where(device_credentials.c.device_id == device_id).values(**values)
            ).rowcount
            if not rotated:
                conn.execute(device_credentials.insert().values(device_id=device_id, **values))
        log.info("device credentials %s device=%s", "rotated" if rotated else "issued", device_id)
        return password

    def revoke(self, device_id: str, now_ms: int) -> None:
        """Revoke ``device_id``'s password (idempotent: the first revocation time is kept)."""
        with self._engine.begin() as conn:
            revoked = conn.execute(
                update(device_credentials)
                .where(device_credentials.c.device_id == device_id, device_credentials.c.revoked_ms.is_(None))
                .values(revoked_ms=now_ms)
            ).rowcount
            if not revoked and conn.execute(
                select(device_credentials.c.device_id).where(device_credentials.c.device_id == device_id)
            ).first() is None:
                raise NotFound("device credentials", device_id)
        if revoked:
            log.info("device credentials revoked device=%s", device_id)

    def issue_many(self, device_ids: Iterable[str], now_ms: int) -> dict[str, str]:
        """``issue`` for many devices in one transaction: device id -> its new password (shown this once)."""
        ids = list(dict.fromkeys(device_ids))
        for device_id in ids:
            _check_username(device_id)
        passwords = {device_id: secrets.token_urlsafe(PASSWORD_BYTES) for device_id in ids}
        rows = [{"device_id": d, "password_hash": mosquitto_password_hash(pw, iterations=DEVICE_PASSWORD_ITERATIONS),
                 "issued_ms": now_ms, "revoked_ms": None}
                for d, pw in passwords.items()]
        with self._engine.begin() as conn:
            existing: set[str] = set()
            for start in range(0, len(ids), 500):  # inside SQLite's bound-parameter limit
                chunk = ids[start:start + 500]
                existing |= set(conn.scalars(select(device_credentials.c.device_id)
                                             .where(device_credentials.c.device_id.in_(chunk))))
            fresh = [row for row in rows if row["device_id"] not in existing]
            stale = [row for row in rows if row["device_id"] in existing]
            if fresh:
                conn.execute(device_credentials.insert(), fresh)
            if stale:
                conn.execute(update(device_credentials)
                             .where(device_credentials.c.device_id == bindparam("b_device_id"))
                             .values(password_hash=bindparam("password_hash"), issued_ms=bindparam("issued_ms"),
                                     revoked_ms=None),
                             [{"b_device_id": r["device_id"], "password_hash": r["password_hash"],
                               "issued_ms": now_ms} for r in stale])
        log.info("device credentials issued in bulk: %d new, %d rotated", len(fresh), len(stale))
        return passwords

    def state(self, device_id: str) -> str:
        """``none`` (never issued), ``revoked`` or ``issued``."""
        with self._engine.connect() as conn:
            row = conn.execute(select(device_credentials.c.revoked_ms)
                               .where(device_credentials.c.device_id == device_id)).first()
        if row is None:
            return "none"
        return "issued" if row[0] is None else "revoked"

    def active_hashes_of(self, device_ids: Iterable[str]) -> dict[str, str]:
        """``active_hashes`` for these devices only (those revoked or never issued are left out)."""
        ids, found = list(device_ids), {}
        with self._engine.connect() as conn:
            for start in range(0, len(ids), 500):
                query = select(device_credentials.c.device_id, device_credentials.c.password_hash).where(
                    device_credentials.c.device_id.in_(ids[start:start + 500]),
                    device_credentials.c.revoked_ms.is_(None))
                found.update({device_id: encoded for device_id, encoded in conn.execute(query)})
        return found

    def active_hashes(self) -> dict[str, str]:
        """device id -> password hash, for every device whose credentials are not revoked."""
        query = select(device_credentials.c.device_id, device_credentials.c.password_hash).where(
            device_credentials.c.revoked_ms.is_(None)
        )
        with self._engine.connect() as conn:
            return {device_id: password_hash for device_id, password_hash in conn.execute(query)}


# --- what goes into the files -------------------------------------------------------

# Covers every contract device id ([A-Za-z0-9][A-Za-z0-9_-]{0,63}) and service names like
# "wanli-ingest"; nothing that could end a line, split a "user:hash" pair or start a comment.
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _check_username(username: str) -> None:
    if not _USERNAME.fullmatch(username):
        raise ValueError(f"MQTT username {username!r} must be 1-64 of [A-Za-z0-9_.-], starting with a letter or digit")


# A device's login, street/kind/id (DeviceTopicOwner.username), or a service account's name.
_LOGIN = re.compile(r"(?:[a-z][a-z0-9_]{0,31}/[a-z][a-z0-9_]{0,31}/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _check_login(username: str) -> None:
    if not _LOGIN.fullmatch(username):
        raise ValueError(f"MQTT login {username!r} must be a service name or street/kind/device-id")


def _check_token(value: str, what: str) -> None:
    if not value or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError(f"{what} {value!r} must be one token, without spaces or control characters")


@dataclass(frozen=True, slots=True)
class DeviceTopicOwner:
    """A device and the one topic family it may publish under."""

    street: str
    kind: str
    device_id: str

    def __post_init__(self) -> None:
        # The contract's own checks first, then ours: its patterns let a trailing newline through.
        try:
            self._status_topic()
        except TopicError as exc:
            raise ValueError(str(exc)) from None
        _check_username(self.device_id)
        _check_token(self.street, "street")
        _check_token(self.kind, "kind")

    @property
    def username(self) -> str:
        """The device's MQTT login: ``{street}/{kind}/{device_id}``, the part of its topics that is its own.

        Mosquitto puts it in for ``%u`` in the ACL's patterns, so one pattern line pins every
        device to its street, kind and id; Mosquitto refuses pattern access to a username with
        ``+`` or ``#``, and the contract's segments have neither.
        """
        return f"{self.street}/{self.kind}/{self.device_id}"

    @property
    def publish_filter(self) -> str:
        """``safety/v1/{street}/{kind}/{device_id}/+``: every class of this device's topics."""
        return self._status_topic().rsplit("/", 1)[0] + "/+"

    @property
    def read_filters(self) -> tuple[str, ...]:
        """What the device may receive: a micro fire station its dispatches, other kinds nothing."""
        if self.kind == FIRE_STATION_KIND:
            return (station_dispatch_topic(self.street, self.device_id),)
        return ()

    def _status_topic(self) -> str:
        return device_topic(self.street, self.kind, self.device_id, MessageClass.STATUS)


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A platform client (ingest, a dispatcher) with the topic filters it reads and writes."""

    username: str
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_username(self.username)
        for pattern in (*self.read, *self.write):
            _check_token(pattern, "topic filter")


FIRE_STATION_KIND = "fire_station"
DISPATCH_FILTER = "dispatch/#"  # every notice the platform sends (docs/mqtt-contract.md, "Dispatch topics")


DRILL_FILTER = f"{DRILL_TOPIC_ROOT.split('/')[0]}/#"  # a drill's notices (devices/drill.py), never on dispatch/


def station_dispatch_topic(street: str, station_id: str) -> str:
    """Where the platform sends a micro fire station's dispatches; a drill twin's (``DRILL-MFS-XQ``) under
    ``drill/v1``."""
    return dispatch_topic(street, FIRE_STATION_KIND, station_id, "duty", is_drill(station_id))


def platform_account(username: str) -> ServiceAccount:
    """The service's own account: it reads every device topic (ingest) and publishes the dispatch notices (and a
    drill's, on ``drill/#``), which it reads back too (the dispatcher's witness: alerts/dispatch.py)."""
    return ServiceAccount(username, read=(subscription(), DISPATCH_FILTER, DRILL_FILTER),
                          write=(DISPATCH_FILTER, DRILL_FILTER))


# Its username doubles as its MQTT client id (the broker config sets use_username_as_clientid),
# which matches the ingest service's default WANLI_MQTT_CLIENT_ID.
INGEST_ACCOUNT = platform_account("wanli-ingest")


def render_password_file(entries: Mapping[str, str]) -> str:
    """Mosquitto's password file: one ``username:hash`` line per entry, sorted by username."""
    return "".join(password_line(username, entries[username]) for username in sorted(entries))


def password_line(username: str, encoded: str) -> str:
    """One ``username:hash`` line, after checking both (a login, one well-formed hash)."""
    _check_login(username)
    _decode_hash(encoded)  # refuses anything but one well-formed hash
    return f"{username}:{encoded}\n"


# Every device's rights, in two lines that hold for any number of devices: with the login
# street/kind/id, "%u" expands to exactly the device's own part of the topic tree.
DEVICE_PATTERNS = (
    "pattern write safety/v1/%u/+",  # its own topics, any class
    # What is addressed to it: a micro fire station's duty terminal its dispatches. Other kinds
    # could read dispatch/v1/{their street/kind/id}/duty too, where the platform sends nothing.
    "pattern read dispatch/v1/%u/duty",
    "pattern read drill/v1/%u/duty",  # a drill twin station's dispatches (devices/drill.py)
)


def render_acl(devices: Iterable[DeviceTopicOwner], service_accounts: Iterable[ServiceAccount]) -> str:
    """Mosquitto's ACL file: a block per service account, then the two device patterns.

    Devices get no line of their own (``DEVICE_PATTERNS``): the file is the same for 5 or
    50,000 devices, and a change to a device touches only the password file. ``devices`` is
    only checked against the accounts for a name used twice.
    """
    accounts = sorted(service_accounts, key=lambda a: a.username)
    owners = list(devices)
    _refuse_duplicates([a.username for a in accounts] + [d.username for d in owners])
    _refuse_duplicates([d.device_id for d in owners])
    blocks = [
        "# Generated by devices/credentials.py from the device registry: edits here are overwritten.\n",
        *(_acl_block(a.username, read=a.read, write=a.write) for a in accounts),
        "# Devices log in as street/kind/device-id: %u is their own part of the topic tree.\n"
        + "".join(f"{line}\n" for line in DEVICE_PATTERNS),
    ]
    return "\n".join(blocks)


def render_broker_auth(
    owners: Iterable[DeviceTopicOwner], hashes: Mapping[str, str], service_accounts: Mapping[ServiceAccount, str]
) -> tuple[str, str]:
    """The password file and ACL text: devices that are both registered and hold credentials.

    ``service_accounts`` maps each account to its plaintext password, hashed here.
    """
    admitted = [owner for owner in owners if owner.device_id in hashes]
    acl_text = render_acl(admitted, service_accounts)  # first: it refuses a name used twice
    passwords = {owner.username: hashes[owner.device_id] for owner in admitted}
    passwords |= {account.username: mosquitto_password_hash(pw) for account, pw in service_accounts.items()}
    return render_password_file(passwords), acl_text


def _acl_block(username: str, *, read: Iterable[str], write: Iterable[str]) -> str:
    rules = [f"topic read {pattern}\n" for pattern in read] + [f"topic write {pattern}\n" for pattern in write]
    return f"user {username}\n" + "".join(rules)


def _refuse_duplicates(usernames: list[str]) -> None:
    duplicates = sorted(name for name, count in Counter(usernames).items() if count > 1)
    if duplicates:
        raise ValueError(f"MQTT usernames used more than once: {', '.join(duplicates)}")


# --- the files on disk and the broker process ---------------------------------------


class BrokerAuthFiles:
    """Mosquitto's ``password_file`` and ``acl_file`` in ``directory``.

    Each file is replaced atomically: Mosquitto that reloads while a file is missing or
    half written refuses every client until the next reload.
    """

    PASSWORD_MODE = 0o600  # hashes only, but still nobody else's business
    ACL_MODE = 0o644

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.password_path = directory / "passwords"
        self.acl_path = directory / "acl"
        # The canary's password for the password file now on disk (devices/broker_access.py): written before the
        # file, so a restarted writer can ask the broker whether it loaded that file. It grants no topic at all.
        self.canary_path = directory / "canary"

    def write(self, password_text: str, acl_text: str, *, acl_changed: bool = True) -> None:
        """Replace both files (the ACL only when ``acl_changed``: with the ``%u`` patterns it rarely is)."""
        # Rules before identities: a reload between the two replaces sees a new ACL with the
        # old passwords, which admits nobody new and forbids a revoked device everything.
        if acl_changed or not self.acl_path.exists():
            _replace_atomically(self.acl_path, acl_text, self.ACL_MODE)
        _replace_atomically(self.password_path, password_text, self.PASSWORD_MODE)

    def write_canary(self, password: str) -> None:
        """The canary's password for the next password file (before that file: see ``canary_path``)."""
        _replace_atomically(self.canary_path, password + "\n", self.PASSWORD_MODE)

    def read_canary(self) -> str | None:
        try:
            return self.canary_path.read_text("utf-8").strip() or None
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    def read_passwords(self) -> dict[str, str] | None:
        """The password file on disk as {username: hash}, or None when it is missing or not one this service wrote."""
        try:
            text = self.password_path.read_text("utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        entries: dict[str, str] = {}
        for line in text.splitlines():
            username, sep, encoded = line.rpartition(":")
            if not sep or not username or username in entries:
                return None
            entries[username] = encoded
        return entries

    def read_acl(self) -> str | None:
        try:
            return self.acl_path.read_text("utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            return None

    def reload(self, pid: int) -> None:
        """Ask the broker to re-read both files (SIGHUP); it does so between network events."""
        os.kill(pid, signal.SIGHUP)


def _replace_atomically(path: Path, text: str, mode: int) -> None:
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as temp:
            temp.write(text)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def sync_broker_auth(
    owners: Iterable[DeviceTopicOwner],
    store: CredentialStore,
    files: BrokerAuthFiles,
    pid: int,
    service_accounts: Mapping[ServiceAccount, str],
) -> None:
    """Rewrite the broker's password and ACL files and make it reload them.

    ``owners`` are the registry's active devices (retired ones get no lines); only those
    with unrevoked credentials are let in. ``service_accounts`` maps each account to its
    plaintext password.
    """
    hashes = store.active_hashes()
    files.write(*render_broker_auth(owners, hashes, service_accounts))
    files.reload(pid)
    log.info("broker auth synced: %d unrevoked device credentials, broker pid %d", len(hashes), pid)
