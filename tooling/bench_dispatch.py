"""``wanli bench dispatch``: how fast the dispatcher's connection sends notices, with and without its read-back.

The dispatcher sends each notice at QoS 1 and waits for the broker's PUBACK before the next
(``alerts.dispatch.NoticePublisher.publish_notice``). With several instances it also reads its
notices back on the same connection (the witness), so the broker writes a PUBLISH and a PUBACK
to it for every notice. Measured against a real Mosquitto on the tests' configuration, once
as configured (``set_tcp_nodelay true``) and once without that line: a PUBACK written behind
another small packet then waits for the client's delayed ACK (40 ms).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from alerts.dispatch import NoticePublisher
from tooling.local_servers import MosquittoServer, free_port

WITNESS = "dispatch/v1/wanli/#,drill/v1/wanli/#"


def rate(server: MosquittoServer, notices: int, witness: bool) -> float:
    """Notices a second through one NoticePublisher (each confirmed by the broker before the next)."""
    publisher = NoticePublisher(server.host, server.port, client_id=f"bench-dispatch-{witness}-{time.time_ns()}",
                                witness_filter=WITNESS if witness else "",
                                on_witnessed=(lambda ids: set(ids)) if witness else None)
    try:
        publisher.connect()
        started = time.perf_counter()
        for n in range(notices):
            publisher.publish_notice(f"dispatch/v1/wanli/building/b{n % 10}", '{"notice_id": %d, "bench": 1}' % n)
        return notices / (time.perf_counter() - started)
    finally:
        publisher.close()


def main(args: argparse.Namespace) -> int:
    print(f"wanli bench dispatch: {args.notices:,} notices a row, Mosquitto on config/mosquitto/test.conf")
    print("| broker | read-back (witness) | notices/s |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="wanli-bench-dispatch-") as tmp:
        for nodelay in (True, False):
            server = MosquittoServer(Path(tmp) / f"broker-{nodelay}", port=free_port(), tcp_nodelay=nodelay)
            server.start()
            try:
                for witness in (False, True):
                    figure = rate(server, args.notices if not witness or nodelay else args.slow_notices, witness)
                    print(f"| {'as configured (set_tcp_nodelay true)' if nodelay else 'without set_tcp_nodelay'} | "
                          f"{'yes' if witness else 'no'} | {figure:,.0f} |")
            finally:
                server.stop()
    return 0


def add_commands(bench_subparsers: Any) -> None:
    p = bench_subparsers.add_parser("dispatch", help="the dispatcher's notices/s, with and without its read-back")
    p.add_argument("--notices", type=int, default=3000, help="notices a row")
    p.add_argument("--slow-notices", type=int, default=200,
                   help="notices for the read-back row without set_tcp_nodelay (about 40 ms each)")
    p.set_defaults(func=main)
