"""``wanli users …`` and ``wanli tokens …``: accounts for people and API tokens for machines.

These speak to the database directly (``WANLI_DATABASE_URL``, else SQLite under
``WANLI_DATA_DIR``), not through the API: the first admin must be made before anyone can sign
in, and the service keeps no account in memory, so a running service sees the change on its
next request. They need the service's ``WANLI_AUTH_SECRET_KEY`` for tokens (the database keeps
only keyed digests). Passwords are read from the terminal, or from standard input with
``--password-stdin``; never from the command line, where ``ps`` and shell history would see them.

    wanli users add wangfang --role operator --role maintainer --name "值班员 王芳"
    wanli users list
    wanli users passwd wangfang
    wanli users disable wangfang        (and enable)
    wanli users roles wangfang --role viewer
    wanli tokens create city-platform --role viewer [--expires-days 365]
    wanli tokens list
    wanli tokens revoke 3
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError

from dashboards.accounts import AccountStore, Role
from foundation.errors import WanliError
from foundation.service_clock import wall_ms


@contextmanager
def _store() -> Iterator[AccountStore]:
    from foundation.db import create_schema, make_engine
    from wanli.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        raise SystemExit(f"wanli: bad configuration:\n{exc}") from None
    engine = make_engine(settings.resolved_database_url)
    try:
        create_schema(engine)  # a fresh database (the first admin before the first start) gets its tables
        yield AccountStore(engine, settings.auth_secret_key.get_secret_value())
    except WanliError as exc:
        raise SystemExit(f"wanli: {exc}") from None
    finally:
        engine.dispose()


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("wanli: the two passwords differ")
    return first


def _ms_text(ms: int | None) -> str:
    return "" if ms is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ms / 1000))


def cmd_users_add(args: argparse.Namespace) -> int:
    password = _read_password(args)
    with _store() as store:
        user = store.add_user(args.username, password, args.role, wall_ms(), display_name=args.name or "",
                              stations=args.station or ())
    print(f"{user.username}: {', '.join(user.roles)}")
    return 0


def cmd_users_list(_args: argparse.Namespace) -> int:
    with _store() as store:
        for u in store.users():
            state = "disabled" if u.disabled_ms is not None else "development only" if u.development_only else ""
            print("\t".join([u.username, ",".join(u.roles), u.display_name, state]))
    return 0


def cmd_users_passwd(args: argparse.Namespace) -> int:
    password = _read_password(args)
    with _store() as store:
        store.update_user(args.username, wall_ms(), password=password)
    print(f"{args.username}: new password set; their sessions have ended")
    return 0


def cmd_users_enable(args: argparse.Namespace, disabled: bool) -> int:
    with _store() as store:
        store.update_user(args.username, wall_ms(), disabled=disabled)
    print(f"{args.username}: {'disabled, signed out everywhere' if disabled else 'enabled'}")
    return 0


def cmd_users_roles(args: argparse.Namespace) -> int:
    with _store() as store:
        user = store.update_user(args.username, wall_ms(), roles=args.role)
    print(f"{user.username}: {', '.join(user.roles)}")
    return 0


def cmd_tokens_create(args: argparse.Namespace) -> int:
    now = wall_ms()
    expires = now + int(args.expires_days * 86_400_000) if args.expires_days else None
    with _store() as store:
        token, raw = store.create_token(args.name, args.role, "cli", now, expires, stations=args.station or ())
    print(f"token {token.id} ({token.name}: {', '.join(token.roles)}); shown only now, keep it:", file=sys.stderr)
    print(raw)  # alone on standard output: export WANLI_TOKEN=$(wanli tokens create …)
    return 0


def cmd_tokens_list(_args: argparse.Namespace) -> int:
    with _store() as store:
        for t in store.tokens():
            state = f"revoked {_ms_text(t.revoked_ms)}" if t.revoked_ms else (
                f"expires {_ms_text(t.expires_ms)}" if t.expires_ms else "")
            print("\t".join([str(t.id), t.name, ",".join(t.roles), f"{t.hint}…",
                             f"last used {_ms_text(t.last_used_ms) or 'never'}", state]))
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    with _store() as store:
        token = store.revoke_token(args.token_id, wall_ms())
    print(f"token {token.id} ({token.name}) revoked")
    return 0


def add_user_commands(sub: Any) -> None:
    roles = [r.value for r in Role]

    def with_roles(p: argparse.ArgumentParser, required: bool = True) -> None:
        p.add_argument("--role", action="append", choices=roles, required=required,
                       help="a role (repeat for several): " + ", ".join(roles))

    def with_stations(p: argparse.ArgumentParser) -> None:
        p.add_argument("--station", action="append", metavar="STATION_ID",
                       help="a micro fire station a responder answers for (repeat for several), e.g. MFS-XQ")

    def with_password(p: argparse.ArgumentParser) -> None:
        p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    users = sub.add_parser("users", help="people's accounts (directly in the database)").add_subparsers(
        dest="what", required=True)
    add = users.add_parser("add", help="a new account")
    add.add_argument("username")
    add.add_argument("--name", help="the name shown and kept in the audit trail, e.g. 值班员 王芳")
    with_roles(add)
    with_stations(add)
    with_password(add)
    add.set_defaults(func=cmd_users_add)
    users.add_parser("list", help="every account").set_defaults(func=cmd_users_list)
    pw = users.add_parser("passwd", help="set a new password (ends the person's sessions)")
    pw.add_argument("username")
    with_password(pw)
    pw.set_defaults(func=cmd_users_passwd)
    for name, disabled in (("disable", True), ("enable", False)):
        p = users.add_parser(name, help=f"{name} an account")
        p.add_argument("username")
        p.set_defaults(func=lambda a, d=disabled: cmd_users_enable(a, d))
    rl = users.add_parser("roles", help="replace an account's roles")
    rl.add_argument("username")
    with_roles(rl)
    rl.set_defaults(func=cmd_users_roles)

    tokens = sub.add_parser("tokens", help="API tokens for machines (directly in the database)").add_subparsers(
        dest="what", required=True)
    create = tokens.add_parser("create", help="a new token; printed once")
    create.add_argument("name", help="who or what uses it, e.g. city-platform")
    with_roles(create)
    with_stations(create)
    create.add_argument("--expires-days", type=float, help="default: until revoked")
    create.set_defaults(func=cmd_tokens_create)
    tokens.add_parser("list", help="every token (never its secret)").set_defaults(func=cmd_tokens_list)
    rv = tokens.add_parser("revoke", help="revoke a token")
    rv.add_argument("token_id", type=int)
    rv.set_defaults(func=cmd_tokens_revoke)
