"""One SQLAlchemy engine for the registry, incidents and dead letters, and its schema migrations.

SQLite by default (a file under the data dir, WAL mode so the API reads while ingest
writes); any SQLAlchemy URL (PostgreSQL in production) otherwise. Tables register themselves:
each module that keeps rows declares its tables on the shared ``METADATA``, so importing it
registers them (this module names none; ``wanli.schema`` gathers the whole service's). The
schema itself is built by the Alembic revisions in ``foundation/migrations/versions``, which
``create_schema`` applies on every start. After changing a table, add a revision
(``foundation/migrations/env.py`` says how);
``tests/integration/test_migrations.py`` fails until the revisions match ``METADATA``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import BigInteger, Connection, Engine, Integer, MetaData, create_engine, event, inspect, text

METADATA = MetaData()

# Row ids that may grow past 2^31 (dead letters under attack, audit trails over years):
# BIGINT in PostgreSQL, and SQLite's INTEGER PRIMARY KEY so it stays the rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Any fixed number works as long as nothing else in the database uses it: "wanli" in ASCII.
_SCHEMA_LOCK_ID = 0x77616E6C69


class SchemaError(RuntimeError):
    """The database cannot be brought to the current schema as it is."""


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            _set_wal(cur)
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across process crashes
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def _set_wal(cur, timeout_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Put a SQLite file in WAL mode (persistent: a no-op once done).

    Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is
    locked" at once, without the busy timeout, when another connection is switching it at the
    same moment (two processes, or two engines, starting on a new file): try again until the
    other has finished.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def create_schema(engine: Engine) -> None:
    """Upgrade the database to the newest schema revision: creates a new database, a no-op on a current one.

    Safe on every start, and when several processes start at once: they take turns.
    """
    with schema_lock(engine) as conn:
        _refuse_unversioned(conn)
        command.upgrade(alembic_config(conn), "head")


def alembic_config(connection: Connection | None = None, url: str = "") -> Config:
    """Alembic's configuration, built in code: the installed package needs no alembic.ini.

    Given a connection, commands run on it (in its transaction); given a URL, env.py opens one.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolates %
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def schema_lock(engine: Engine) -> Iterator[Connection]:
    """A connection whose transaction holds the database's schema lock, committed on success.

    PostgreSQL: a transaction-level advisory lock, so a second process starting at the same
    moment waits and then finds the schema current (its DDL is transactional too).
    SQLite: BEGIN IMMEDIATE takes the write lock up front for the same effect.
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK_ID})
        elif conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn
        conn.commit()


def _refuse_unversioned(conn: Connection) -> None:
    """Fail clearly, rather than on "table already exists", for a database made before migrations."""
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables and tables & set(METADATA.tables):  # the tables registered so far
        url = conn.engine.url.render_as_string(hide_password=True)
        raise SchemaError(
            f"{url} has wanli's tables but no migration history (it was created before schema migrations). "
            "Development data: delete it. Data to keep whose tables match the first revision: "
            "python -m wanli.migrations -x url=URL stamp 0001, then start again."
        )
