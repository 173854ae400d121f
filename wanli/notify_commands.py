"""``wanli notify test --person NAME``: a test message through every contact point of a person, and what came back.

Reads the settings (WANLI_* environment, never a command-line secret) and the database the
service uses; needs no running service.
"""

from __future__ import annotations

import argparse
import sys

from alerts.store import IncidentStore
from devices.hierarchy import load_hierarchy
from foundation.db import create_schema, make_engine
from foundation.errors import NotFound
from wanli.notify_setup import build_notifier
from foundation.service_clock import wall_ms
from wanli.settings import Settings


def _cmd_notify_test(args: argparse.Namespace) -> int:

    settings = Settings()
    engine = make_engine(settings.resolved_database_url)
    try:
        create_schema(engine)
        notifier, _ = build_notifier(settings, engine, load_hierarchy(settings.hierarchy_file), IncidentStore(engine),
                                     wall_ms)
        try:
            outcomes = notifier.send_test(args.person)
        except NotFound:
            print(f"wanli: nobody called {args.person!r} in the street's data or the contact points", file=sys.stderr)
            return 2
        finally:
            notifier.close()
    finally:
        engine.dispose()
    if not outcomes:
        print(f"{args.person}: no contact point")
        return 1
    failed = 0
    for o in outcomes:
        if o.error:
            failed += 1
            print(f"FAILED  {o.channel:<9} {o.address:<16} {o.provider or '-':<13} {o.error}")
        else:
            print(f"ok      {o.channel:<9} {o.address:<16} {o.provider:<13} id={o.message_id}")
    return 1 if failed else 0


def add_notify_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    notify = sub.add_parser("notify", help="reaching people: test a person's contact points")
    notify_sub = notify.add_subparsers(dest="what", required=True)
    test = notify_sub.add_parser("test", help="send a test message through every contact point of a person")
    test.add_argument("--person", required=True, help="the person's name as in the street's data, e.g. '儿子 王强'")
    test.set_defaults(func=_cmd_notify_test)
