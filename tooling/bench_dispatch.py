"""``wanli bench dispatch``: how fast the dispatcher's connection sends notices, with and without its read-back.

The dispatcher sends notices at QoS 1, a batch in flight at once, and waits for the broker's PUBACKs
(``alerts.dispatch.NoticePublisher.publish_notices``); one at a time (each PUBACK awaited before the next) is
how it sent them before, measured beside it. With several instances it also reads its
notices back on the same connection (the witness), so the broker writes a PUBLISH and a PUBACK
to it for every notice. Measured against a real Mosquitto on the tests' configuration, once
as configured (``set_tcp_nodelay true``) and once without that line: a PUBACK written behind
another small packet then waits for the client's delayed ACK (40 ms).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from alerts.dispatch import Dispatcher, NoticePublisher
from tooling.local_servers import MosquittoServer, free_port

WITNESS = "dispatch/v1/wanli/#,drill/v1/wanli/#"


def rate(server: MosquittoServer, notices: int, witness: bool, batch: int = 1) -> float:
    """Notices a second through one NoticePublisher, ``batch`` in flight at once and confirmed together (1: each
    confirmed by the broker before the next)."""
    publisher = NoticePublisher(server.host, server.port, client_id=f"bench-dispatch-{witness}-{time.time_ns()}",
                                witness_filter=WITNESS if witness else "",
                                on_witnessed=(lambda ids: set(ids)) if witness else None)
    try:
        publisher.connect()
        started = time.perf_counter()
        for first in range(0, notices, batch):
            errors = publisher.publish_notices([(f"dispatch/v1/wanli/building/b{n % 10}",
                                                 '{"notice_id": %d, "bench": 1}' % n)
                                                for n in range(first, min(first + batch, notices))])
            if any(errors):
                raise ConnectionError(next(e for e in errors if e))
        return notices / (time.perf_counter() - started)
    finally:
        publisher.close()


def drain_rate(server: MosquittoServer, database_url: str, notices: int, witness: bool) -> tuple[float, int, int]:
    """The dispatcher emptying an outbox of ``notices`` pending notices: notices a second, and how many reached a
    subscriber on the dispatch topics once and more than once (each must arrive once)."""
    from collections import Counter

    from alerts.escalation import Notice
    from alerts.outbox import Outbox
    from foundation.db import create_schema, make_engine
    from foundation.mqtt import Subscriber

    engine = make_engine(database_url)
    create_schema(engine)
    outbox = Outbox(engine)
    with engine.begin() as conn:
        outbox.add([Notice(f"inc_{n}", 0, "building", f"b{n % 10}", "building_leader", "楼长", "",
                           f"dispatch/v1/wanli/building/b{n % 10}/building_leader", '{"v":1,"bench":1}')
                    for n in range(notices)], 1, conn)
    copies: Counter[bytes] = Counter()
    lock = threading.Lock()

    def heard(message: Any) -> None:
        with lock:
            copies[message.payload] += 1

    listener = Subscriber(server.host, server.port, "dispatch/v1/wanli/building/#", heard,
                          client_id=f"bench-dispatch-ear-{time.time_ns()}")
    listener.wait(10)
    publisher = NoticePublisher(server.host, server.port, client_id=f"bench-dispatch-drain-{time.time_ns()}",
                                witness_filter=WITNESS if witness else "",
                                on_witnessed=(lambda ids: outbox.mark_witnessed(ids, 2)) if witness else None)
    dispatcher = Dispatcher(outbox, publisher)
    try:
        publisher.connect()
        started = time.perf_counter()
        while outbox.pending(limit=1):
            dispatcher.send_pending()
        elapsed = time.perf_counter() - started
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum(copies.values()) < notices:
            time.sleep(0.05)
        time.sleep(0.5)
        with lock:
            return notices / elapsed, sum(1 for n in copies.values() if n == 1), sum(1 for n in copies.values() if n > 1)
    finally:
        dispatcher.stop()
        listener.close()
        engine.dispose()


def main(args: argparse.Namespace) -> int:
    print(f"wanli bench dispatch: {args.notices:,} notices a row, Mosquitto on config/mosquitto/test.conf")
    print("| broker | read-back (witness) | in flight | notices/s |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="wanli-bench-dispatch-") as tmp:
        for nodelay in (True, False):
            server = MosquittoServer(Path(tmp) / f"broker-{nodelay}", port=free_port(), tcp_nodelay=nodelay)
            server.start()
            try:
                for witness in (False, True):
                    for batch in (1, Dispatcher.BATCH):
                        figure = rate(server, args.notices if not witness or nodelay else args.slow_notices, witness,
                                      batch)
                        print(f"| {'as configured (set_tcp_nodelay true)' if nodelay else 'without set_tcp_nodelay'} | "
                              f"{'yes' if witness else 'no'} | {batch} | {figure:,.0f} |")
            finally:
                server.stop()
        if args.drain:
            drain(Path(tmp), args.drain)
    return 0


def drain(tmp: Path, notices: int) -> None:
    """The whole dispatcher (``Dispatcher.send_pending``: claimed in the outbox, sent, marked) emptying an outbox,
    on SQLite (one instance) and PostgreSQL (several: the witness reads every notice back)."""
    from tooling.local_servers import PostgresServer

    print(f"\nthe dispatcher emptying an outbox of {notices:,} notices (Mosquitto as configured)")
    print("| database | read-back (witness) | notices/s | received once | more than once |")
    print("|---|---|---|---|---|")
    server = MosquittoServer(tmp / "broker-drain", port=free_port())
    postgres = PostgresServer(tmp / "postgres", port=free_port())
    server.start()
    postgres.start()
    try:
        for name, url, witness in (("SQLite", f"sqlite:///{tmp / 'drain.db'}", False),
                                   ("PostgreSQL", postgres.create_database("bench_dispatch"), True)):
            figure, once, more = drain_rate(server, url, notices, witness)
            print(f"| {name} | {'yes' if witness else 'no'} | {figure:,.0f} | {once:,} | {more:,} |")
    finally:
        server.stop()
        postgres.stop()
        postgres.remove_data()


def add_commands(bench_subparsers: Any) -> None:
    p = bench_subparsers.add_parser("dispatch", help="the dispatcher's notices/s, with and without its read-back")
    p.add_argument("--notices", type=int, default=3000, help="notices a row")
    p.add_argument("--slow-notices", type=int, default=200,
                   help="notices for the read-back row without set_tcp_nodelay (about 40 ms each)")
    p.add_argument("--drain", type=int, default=3000,
                   help="notices in the outbox the whole dispatcher empties, on SQLite and PostgreSQL (0: skip)")
    p.set_defaults(func=main)
