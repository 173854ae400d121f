"""Alembic's environment for wanli's SQL tables: how revisions are applied and generated.

After changing a table declared on ``foundation.db.METADATA`` (in devices/, alerts/, ingest/),
add a revision, from the repository root:

    .venv/bin/python -m wanli.migrations revision --autogenerate -m "what changed"

then read the new file in ``foundation/migrations/versions/`` and tidy it: autogenerate sees a
rename as a drop plus an add, and cannot know how existing rows should be filled in.
``tests/integration/test_migrations.py`` fails until the revisions build exactly ``METADATA``,
on SQLite and on PostgreSQL.

Two ways in: ``foundation.db.create_schema`` (every start) hands over an open connection whose
transaction holds the schema lock; ``python -m wanli.migrations`` gives a URL instead.
SQLite runs in batch mode: it cannot ALTER most things, so Alembic rebuilds the table;
the batch operations a revision generated that way contains run unchanged on PostgreSQL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from foundation.db import METADATA, make_engine, schema_lock

config = context.config
# The tables registered so far: the whole service's when run by ``python -m wanli.migrations`` (wanli/schema.py).
target_metadata = METADATA


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():  # `upgrade --sql`: the SQL script, for review, nothing executed
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    run_migrations(given)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url", ""))
    try:
        with schema_lock(engine) as connection:
            run_migrations(connection)
    finally:
        engine.dispose()
