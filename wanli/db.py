"""One SQLAlchemy engine for the registry, incidents and dead letters.

SQLite by default (a file under the data dir, WAL mode so the API reads while ingest
writes); any SQLAlchemy URL (PostgreSQL in production) otherwise. Each domain module
declares its tables on the shared ``METADATA``.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import BigInteger, Engine, Integer, MetaData, create_engine, event

METADATA = MetaData()

# Row ids that may grow past 2^31 (dead letters under attack, audit trails over years):
# BIGINT in PostgreSQL, and SQLite's INTEGER PRIMARY KEY so it stays the rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across process crashes
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def create_schema(engine: Engine) -> None:
    # Import the modules that declare tables so METADATA knows them all.
    import alerts.store  # noqa: F401
    import devices.registry  # noqa: F401
    import ingest.dead_letters  # noqa: F401

    METADATA.create_all(engine)
