"""The Alembic revisions build exactly the tables the code declares, on SQLite and on PostgreSQL.

A table changed in code without a new revision fails ``test_the_revisions_build_exactly_the_declared_tables``
with the command that makes one (see foundation/migrations/env.py).
"""

import subprocess
import sys
import threading
from pathlib import Path
from pprint import pformat

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import BigInteger, inspect

from foundation.db import SchemaError, alembic_config, create_schema, make_engine, schema_lock
from wanli.schema import whole_schema

MAKE_REVISION = '.venv/bin/python -m wanli.migrations revision --autogenerate -m "what changed"'
REPO_ROOT = Path(__file__).resolve().parents[2]
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def differences(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, whole_schema())


def revision(engine):
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_the_revisions_build_exactly_the_declared_tables(engine):
    create_schema(engine)
    found = differences(engine)
    assert not found, (
        f"The tables declared in code differ from what foundation/migrations/versions builds on {engine.dialect.name}:\n"
        f"{pformat(found)}\n"
        f"Add a revision, from the repository root:  {MAKE_REVISION}\n"
        "then read and tidy the new file in foundation/migrations/versions/."
    )
    assert revision(engine) == HEAD


def test_upgrading_again_is_a_no_op(engine):
    create_schema(engine)
    tables = inspect(engine).get_table_names()
    create_schema(engine)
    assert revision(engine) == HEAD and inspect(engine).get_table_names() == tables


def test_downgrade_to_base_then_upgrade_again_rebuilds_the_schema(engine):
    create_schema(engine)
    with schema_lock(engine) as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(engine).get_table_names()) == {"alembic_version"} and revision(engine) is None
    create_schema(engine)
    assert differences(engine) == [] and revision(engine) == HEAD


def test_epoch_millisecond_columns_hold_64_bits(engine):
    """A 32-bit integer overflows on 2038-01-19 in seconds, and on 1970-01-25 in milliseconds."""
    create_schema(engine)
    narrow = [f"{table}.{column['name']}" for table in whole_schema().tables
              for column in inspect(engine).get_columns(table)
              if column["name"].endswith("_ms") and not isinstance(column["type"], BigInteger)]
    assert narrow == []


def test_two_processes_starting_at_once_both_find_the_schema_in_place(database_url):
    engines = [make_engine(database_url) for _ in range(2)]
    errors = []

    def start(engine):
        try:
            create_schema(engine)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and revision(engines[0]) == HEAD
    finally:
        for e in engines:
            e.dispose()


def test_a_database_made_before_migrations_is_refused_with_what_to_do(engine):
    whole_schema().create_all(engine)
    with pytest.raises(SchemaError, match="no migration history"):
        create_schema(engine)


def test_the_command_line_finds_no_change_missing_a_revision():
    """``python -m wanli.migrations check`` runs the same comparison as the revision command, on a scratch database."""
    done = subprocess.run([sys.executable, "-m", "wanli.migrations", "check"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No new upgrade operations detected" in done.stdout + done.stderr
