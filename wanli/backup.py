"""``wanli backup`` and ``wanli restore``: everything the service needs to resume, saved while it runs.

A backup is a directory (tar it to move it)::

    manifest.json             what is in it: each file's size and SHA-256, the database kind and
                              schema revision, when and from where
    database/wanli.db         SQLite: the registry, device credentials (hashes), accounts, incidents
                              with their audit, escalation deadlines, the notification outbox with
                              what was sent, rule and sequence state; copied with SQLite's online
                              backup API (one consistent snapshot; writers carry on meanwhile)
    database/wanli.pgdump     PostgreSQL instead: ``pg_dump --format=custom`` (one snapshot)
    telemetry/telemetry.db    the embedded telemetry store with its aggregates (SQLite backend only)
    telemetry/spool.db        points still waiting for the telemetry store
    broker/…                  the broker's access material (WANLI_BROKER_AUTH_DIR: passwords, acl)
    settings.json             the settings in force, secrets replaced by "<redacted>"

Every file is read back and checked against the manifest after writing, SQLite copies pass
``PRAGMA integrity_check`` and a dump must list under ``pg_restore --list``.

``restore`` checks the manifest first, then writes into a data directory (SQLite) or a database
(PostgreSQL) that must be empty, or is overwritten only with ``force``. Secrets are never in the
backup in clear: give the restored service the same WANLI_AUTH_SECRET_KEY (API tokens and
sessions are keyed by it) and WANLI_MQTT_PASSWORD. Device passwords are kept only as hashes,
in the database and the broker's password file, so devices log in again with what they have.
Database passwords reach ``pg_dump`` and ``pg_restore`` through their environment, never argv.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from foundation.errors import WanliError
from foundation.service_clock import ClockMs, wall_ms
from wanli.settings import Settings

FORMAT = 1
MANIFEST = "manifest.json"
REDACTED = "<redacted>"
_SECRET_SETTING = re.compile(r"password|token|secret|key", re.IGNORECASE)
_SQLITE_FILES = {"database/wanli.db": "wanli.db", "telemetry/telemetry.db": "telemetry.db",
                 "telemetry/spool.db": "spool.db"}


class BackupError(WanliError):
    """A backup cannot be written, or a backup cannot be trusted or restored where asked."""


@dataclass(frozen=True, slots=True)
class BackupSummary:
    directory: Path
    manifest: dict[str, Any]

    @property
    def files(self) -> list[dict[str, Any]]:
        return self.manifest["files"]  # type: ignore[no-any-return]


# --- backup -------------------------------------------------------------------------------------------

def backup(settings: Settings, destination: Path, clock_ms: ClockMs = wall_ms) -> BackupSummary:
    """Write a backup of the running (or stopped) service described by ``settings`` into ``destination``."""
    if destination.exists() and any(destination.iterdir()):
        raise BackupError(f"{destination} is not empty: give a new directory for the backup")
    destination.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url
    kind = _database_kind(url)
    if kind == "sqlite":
        _sqlite_copy(_sqlite_path(url), destination / "database" / "wanli.db")
    else:
        _pg_dump(url, destination / "database" / "wanli.pgdump")
    for name in ("telemetry.db", "spool.db"):
        source = settings.data_dir / name
        if source.is_file() and (name == "spool.db" or settings.telemetry_backend.value == "sqlite"):
            _sqlite_copy(source, destination / "telemetry" / name)
    if settings.broker_auth_dir is not None and settings.broker_auth_dir.is_dir():
        for source in sorted(p for p in settings.broker_auth_dir.iterdir() if p.is_file()):
            target = destination / "broker" / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (destination / "settings.json").write_text(
        json.dumps(settings_without_secrets(settings), ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    files = [_describe(destination, p) for p in sorted(destination.rglob("*")) if p.is_file()]
    manifest = {
        "format": FORMAT, "created_ms": clock_ms(), "street": settings.street, "database": kind,
        "schema_revision": _schema_revision(destination, kind), "telemetry_backend": settings.telemetry_backend.value,
        "files": files,
    }
    (destination / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return verify(destination)


def settings_without_secrets(settings: Settings) -> dict[str, Any]:
    values = settings.model_dump(mode="json")
    for name, value in values.items():
        if _SECRET_SETTING.search(name) and value:
            values[name] = REDACTED
    if values.get("database_url"):
        values["database_url"] = make_url(settings.database_url).render_as_string(hide_password=True)
    if values.get("webhook_url"):  # a webhook URL may carry a token in its query
        values["webhook_url"] = settings.webhook_url.split("?", 1)[0] + ("?<redacted>" if "?" in settings.webhook_url else "")
    return values


def _describe(root: Path, path: Path) -> dict[str, Any]:
    return {"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sqlite_copy(source: Path, target: Path) -> None:
    """One consistent snapshot through SQLite's backup API (a read transaction: writers in WAL mode carry on)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst)  # all pages in one step: a snapshot, never restarted by a concurrent writer
        dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file, no -wal beside it
    finally:
        dst.close()
        src.close()
    partial.rename(target)


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def _database_kind(url: str) -> str:
    if url.startswith("sqlite"):
        return "sqlite"
    if url.startswith("postgresql"):
        return "postgresql"
    raise BackupError(f"cannot back up a database at {make_url(url).render_as_string(hide_password=True)}: "
                      "SQLite and PostgreSQL only")


def _schema_revision(root: Path, kind: str) -> str:
    if kind != "sqlite":
        return ""
    with sqlite3.connect(f"file:{root / 'database' / 'wanli.db'}?mode=ro", uri=True) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(row[0]) if row else ""


# --- PostgreSQL tools -----------------------------------------------------------------------------------

def pg_tool(name: str) -> str:
    """The newest installed PostgreSQL's ``name`` (Debian keeps them under /usr/lib/postgresql/N/bin)."""
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    found = str(versions[-1]) if versions else shutil.which(name)
    if not found:
        raise BackupError(f"{name} is not installed (Debian package postgresql-client)")
    return found


def _pg_env(url: str) -> dict[str, str]:
    """libpq's environment for the URL: the password never appears on a command line."""
    u = make_url(url)
    env = {**os.environ, "PGHOST": u.host or "127.0.0.1", "PGPORT": str(u.port or 5432),
           "PGDATABASE": u.database or "", "PGUSER": u.username or os.environ.get("PGUSER", "postgres")}
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    return env


def _run(argv: list[str], env: dict[str, str], what: str) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise BackupError(f"{what} failed ({done.returncode}): {done.stderr.strip()[:2000]}")
    return done.stdout


def _pg_dump(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    _run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={target}"],
         _pg_env(url), "pg_dump")


# --- verify -------------------------------------------------------------------------------------------

def verify(directory: Path) -> BackupSummary:
    """Check every file against the manifest (and the databases' own checks); BackupError naming what is wrong."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackupError(f"{directory} has no readable {MANIFEST}: {exc}") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{directory}: backup format {manifest.get('format')!r} is not {FORMAT}")
    listed = set()
    for entry in manifest["files"]:
        path = directory / entry["path"]
        listed.add(entry["path"])
        if not path.is_file():
            raise BackupError(f"{entry['path']} is missing from the backup")
        if path.stat().st_size != entry["bytes"] or _sha256(path) != entry["sha256"]:
            raise BackupError(f"{entry['path']} does not match its checksum: the backup is damaged")
        if entry["path"] in _SQLITE_FILES:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                result = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if result != "ok":
                raise BackupError(f"{entry['path']}: SQLite integrity check says {result}")
        elif entry["path"].endswith(".pgdump"):
            _run([pg_tool("pg_restore"), "--list", str(path)], dict(os.environ), "pg_restore --list")
    if "database/wanli.db" not in listed and "database/wanli.pgdump" not in listed:
        raise BackupError(f"{directory}: the backup holds no database")
    return BackupSummary(directory, manifest)


# --- restore ------------------------------------------------------------------------------------------

def restore(source: Path, settings: Settings, force: bool = False) -> BackupSummary:
    """Restore the backup in ``source`` where ``settings`` point (data dir, database URL, broker auth dir)."""
    summary = verify(source)
    manifest = summary.manifest
    url = settings.resolved_database_url
    kind = _database_kind(url)
    if kind != manifest["database"]:
        raise BackupError(f"the backup holds a {manifest['database']} database and WANLI_DATABASE_URL points at "
                          f"{kind}: restore into the same kind of database")
    names = {e["path"] for e in manifest["files"]}
    broker_files = sorted(n for n in names if n.startswith("broker/"))
    _check_targets(settings, kind, url, bool(broker_files), force)

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        _replace_sqlite(source / "database" / "wanli.db", _sqlite_path(url))
    else:
        argv = [pg_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction"]
        if force:
            argv += ["--clean", "--if-exists"]
        _run([*argv, f"--dbname={make_url(url).database}", str(source / "database" / "wanli.pgdump")],
             _pg_env(url), "pg_restore")
    _forget_leases(url)
    for backup_name, file_name in (("telemetry/telemetry.db", "telemetry.db"), ("telemetry/spool.db", "spool.db")):
        if backup_name in names:
            _replace_sqlite(source / backup_name, settings.data_dir / file_name)
    if broker_files:
        auth_dir = settings.broker_auth_dir
        assert auth_dir is not None  # checked by _check_targets
        auth_dir.mkdir(parents=True, exist_ok=True)
        for name in broker_files:
            shutil.copy2(source / name, auth_dir / Path(name).name)
    return summary


def _forget_leases(url: str) -> None:
    """A restored database carries the roles' leases of the service it was copied from (foundation/leases.py), taken
    while that one ran: none of them holds here. Left in, the restored service would wait for them to lapse
    before it ingests."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            if "leases" in inspect(conn).get_table_names():
                conn.execute(text("DELETE FROM leases"))
    finally:
        engine.dispose()


def _check_targets(settings: Settings, kind: str, url: str, has_broker_files: bool, force: bool) -> None:
    if kind == "sqlite":
        occupied = [p.name for p in (_sqlite_path(url), settings.data_dir / "telemetry.db", settings.data_dir / "spool.db")
                    if p.exists()]
        if occupied and not force:
            raise BackupError(f"{settings.data_dir} already holds {', '.join(occupied)}: restore into a fresh data "
                              "directory, or add --force to overwrite it (stop the service first)")
    else:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                tables = inspect(conn).get_table_names()
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any connection failure is the same answer
            raise BackupError(f"cannot reach {make_url(url).render_as_string(hide_password=True)}: {exc}") from exc
        finally:
            engine.dispose()
        if tables and not force:
            raise BackupError(f"{make_url(url).render_as_string(hide_password=True)} is not empty ({len(tables)} "
                              "tables): restore into a new database, or add --force to replace its contents")
        occupied = [p.name for p in (settings.data_dir / "telemetry.db", settings.data_dir / "spool.db") if p.exists()]
        if occupied and not force:
            raise BackupError(f"{settings.data_dir} already holds {', '.join(occupied)}: use a fresh data directory "
                              "or --force")
    if has_broker_files:
        if settings.broker_auth_dir is None:
            raise BackupError("the backup holds the broker's access files: set WANLI_BROKER_AUTH_DIR (or "
                              "--broker-auth-dir) to where the broker reads them")
        if settings.broker_auth_dir.is_dir() and any(settings.broker_auth_dir.iterdir()) and not force:
            raise BackupError(f"{settings.broker_auth_dir} is not empty: give an empty directory or --force")


def _replace_sqlite(source: Path, target: Path) -> None:
    """Write ``source`` as ``target``, removing a stale -wal/-shm of an overwritten file first."""
    for suffix in ("-wal", "-shm", "-journal"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    partial.rename(target)
