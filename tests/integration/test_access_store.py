"""Accounts, sessions and tokens in the database, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from dashboards.accounts import AccountStore, Role, sessions_table, tokens_table, users_table
from foundation.errors import Conflict, NotFound

KEY = "k" * 40
HOUR = 3_600_000


def test_passwords_sessions_and_tokens_keep_no_secret_in_the_database(sql_engine: Engine) -> None:
    store = AccountStore(sql_engine, KEY, session_idle_ms=HOUR, session_max_ms=24 * HOUR)
    user = store.add_user("wangfang", "s3cret-enough", ["operator"], 0, display_name="值班员 王芳")
    with pytest.raises(Conflict):
        store.add_user("wangfang", "another-one!", ["viewer"], 0)
    assert store.check_password("wangfang", "s3cret-enough", 0) == user
    assert store.check_password("wangfang", "wrong-one", 0) is None
    assert store.check_password("nobody", "s3cret-enough", 0) is None

    session = store.open_session(user, 0)
    _token, raw = store.create_token("city-platform", ["viewer"], "test", 0)
    with sql_engine.connect() as conn:
        stored = [*conn.execute(select(users_table.c.password_hash)).scalars(),
                  *conn.execute(select(sessions_table.c.digest)).scalars(),
                  *conn.execute(select(tokens_table.c.digest)).scalars()]
    assert stored[0].startswith("$argon2id$") and "s3cret-enough" not in stored[0]
    assert session not in stored and raw not in stored and all(len(d) == 64 for d in stored[1:])
    # Another key (another service's, or a copy of the database alone) recognises nothing.
    other = AccountStore(sql_engine, "o" * 40)
    assert other.session_principal(session, 1) is None and other.token_principal(raw, 1) is None
    assert store.token_principal(raw, 1).roles == (Role.VIEWER,)  # type: ignore[union-attr]


def test_a_session_ends_idle_or_old_and_with_a_new_password(sql_engine: Engine) -> None:
    store = AccountStore(sql_engine, KEY, session_idle_ms=HOUR, session_max_ms=3 * HOUR)
    user = store.add_user("lisi", "s3cret-enough", ["maintainer"], 0)
    idle = store.open_session(user, 0)
    assert store.session_principal(idle, HOUR + 1) is None  # unused for more than an hour
    busy = store.open_session(user, 0)
    for t in range(1, 4):  # used every 55 minutes: alive, until three hours after signing in
        seen = store.session_principal(busy, t * 55 * 60_000)
        assert seen is not None and seen.name == "lisi"
    assert store.session_principal(busy, 3 * HOUR + 1) is None
    fresh = store.open_session(user, 4 * HOUR)
    store.update_user("lisi", 4 * HOUR, password="a-new-one-now")
    assert store.session_principal(fresh, 4 * HOUR + 1) is None
    with pytest.raises(NotFound):
        store.update_user("nobody", 0, disabled=True)


def test_tokens_expire_and_are_revoked(sql_engine: Engine) -> None:
    store = AccountStore(sql_engine, KEY)
    token, raw = store.create_token("ci", ["tester"], "admin", 0, expires_ms=HOUR)
    assert store.token_principal(raw, HOUR - 1) is not None
    assert store.token_principal(raw, HOUR) is None
    forever, raw2 = store.create_token("city-platform", ["viewer"], "admin", 0)
    assert store.revoke_token(forever.id, 5).revoked_ms == 5
    assert store.token_principal(raw2, 6) is None
    assert [t.name for t in store.tokens()] == ["ci", "city-platform"]
