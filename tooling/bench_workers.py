"""``wanli bench workers``: one ingest worker against two through MQTT shared subscriptions.

Each worker is a ``wanli run`` of its own (its own process, receiver process, data dir and
SQLite telemetry file), all on one registry database (SQLite, shared) and one real
Mosquitto. Throughput is measured on a backlog, as ``wanli bench ingest`` does: the
workers subscribe (persistent sessions), stop, ``--messages`` messages of the load mix are
published at QoS 1, the workers start again together and the clock runs from the first
message any of them received until every message is counted and every spool is empty.

Three set-ups:
- ``one``: one worker on ``safety/#``;
- ``shared``: two workers in **one** share group on ``safety/#``. Mosquitto hands each
  message of a group to the next member in turn (per message, not per client or per
  device), so a device's messages are split between the workers;
- ``families``: two workers, each its own group on a disjoint family of topics (smoke
  detectors; every other kind), as docs/scaling.md prescribes: each device on one worker.

Per-device order is read back from each worker's telemetry file (rows in the order the
worker wrote them): for each device, are its sequence numbers increasing within each
worker, how many devices were split across both, and whether every message was stored
exactly once across the workers. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.catalog import KINDS
from devices.kinds import SLICES
from devices.messages import MessageClass
from devices.registry import DeviceRecord
from simulators.load import build_messages, publish, stamp
from tooling.chaos import ServiceProcess
from tooling.local_servers import MosquittoServer
from tooling.street_files import street_on_disk
from foundation.service_clock import wall_ms

ALL = "safety/#"
SMOKE = "safety/v1/+/smoke_detector/#"
OTHERS = ",".join(f"safety/v1/+/{k}/#" for k in SLICES if k != "smoke_detector")  # every other registered kind
SETUPS: dict[str, list[tuple[str, str]]] = {  # (topics, share group) per worker
    "one": [(ALL, "g-all")],
    "shared": [(ALL, "g-all"), (ALL, "g-all")],
    "families": [(SMOKE, "g-smoke"), (OTHERS, "g-others")],
}


EVENT_TYPES = {t for kind in KINDS.values() for t in kind.message_types(MessageClass.EVENT)}


def stored_seqs(data_dir: Path, events: bool | None = None) -> dict[str, list[int]]:
    """Each device's stored sequence numbers in the order the worker wrote them (device-level rows, not ports);
    ``events``: only event messages (True), only the others (False), all (None)."""
    path = data_dir / "telemetry.db"
    if not path.exists():
        return {}
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT device_id, type, fields FROM readings WHERE port = '' ORDER BY rowid").fetchall()
    out: dict[str, list[int]] = defaultdict(list)
    for device_id, msg_type, fields in rows:
        if events is None or (msg_type in EVENT_TYPES) == events:
            out[device_id].append(json.loads(fields)["seq"])
    return dict(out)


@dataclass
class OrderFigures:
    devices: int
    split: int  # devices whose messages went to more than one worker
    out_of_order_within_a_worker: int  # devices whose sequence went backwards inside one worker's writes
    stored_once: bool  # every message published stored exactly once across the workers
    missing: int
    extra: int
    events_overtook: int = 0  # of the out of order, devices in order within each class: an event served first


def order_figures(per_worker: list[dict[str, list[int]]], sent: dict[str, list[int]]) -> OrderFigures:
    split = out_of_order = missing = extra = 0
    devices = set().union(*per_worker) if per_worker else set()
    for d in devices:
        shares = [w[d] for w in per_worker if d in w]
        split += len(shares) > 1
        out_of_order += any(any(b < a for a, b in itertools.pairwise(s)) for s in shares)
    for d, seqs in sent.items():
        got = Counter(s for w in per_worker for s in w.get(d, []))
        want = Counter(seqs)
        missing += sum((want - got).values())
        extra += sum((got - want).values())  # stored twice, or never sent
    return OrderFigures(len(devices), split, out_of_order, missing == 0 and extra == 0, missing, extra)


@dataclass
class WorkersResult:
    setup: str
    workers: int
    messages: int
    seconds: float
    per_worker: list[int]  # messages received by each
    duplicates: int
    rejected: int
    order: OrderFigures
    load_before: float
    load_after: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def _start_together(workers: list[ServiceProcess]) -> None:
    """Start every worker at once (each ``start`` waits for readiness: start them from threads)."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(len(workers)) as pool:
        for f in [pool.submit(w.start) for w in workers]:
            f.result()


def run_setup(workdir: Path, broker: MosquittoServer, street_file: Path, records: list[DeviceRecord], setup: str,
              count: int, seed: int = 1) -> WorkersResult:
    workdir.mkdir(parents=True, exist_ok=True)
    database = f"sqlite:///{workdir / 'shared.db'}"
    # Groups of this set-up's own: an earlier set-up's sessions stay subscribed at the broker (persistent), and a
    # member that never comes back would be handed its turn of the messages for good.
    suffix = f"{setup}-{time.time_ns() % 10**6}"
    workers = [ServiceProcess(workdir / f"w{i + 1}", broker, hierarchy_file=street_file,
                              extra_env={"WANLI_DATABASE_URL": database, "WANLI_INGEST_TOPICS": topics,
                                         "WANLI_INGEST_SHARE_GROUP": f"{group}-{suffix}"})
               for i, (topics, group) in enumerate(SETUPS[setup])]
    try:
        workers[0].start()
        workers[0].register(records)  # in the shared database before the others load the registry
        for w in workers[1:]:
            w.start()
        for w in workers:  # subscribed once, sessions kept at the broker: now away
            w.stop()
        # Each message its own millisecond: the telemetry table keeps one row per device, type and time (as InfluxDB
        # one point per series and time), so two in one millisecond would read back as one, and out of order.
        t0 = wall_ms() - count
        messages = [(topic, stamp(payload, t0 + i))
                    for i, (topic, payload) in enumerate(build_messages(records, count, seed=seed, start_seq=1))]
        sent: dict[str, list[int]] = defaultdict(list)
        for topic, payload in messages:
            sent[topic.split("/")[4]].append(json.loads(payload)["seq"])
        report = publish(messages, broker.host, broker.port, qos=1)
        if report.acknowledged != len(messages):
            raise RuntimeError(f"the broker acknowledged {report.acknowledged} of {len(messages)}")
        load_before = os.getloadavg()[0]
        _start_together(workers)
        deadline = time.monotonic() + 60 + count / 500
        while True:
            stats = [w.stats() for w in workers]
            if sum(s["received"] for s in stats) >= len(messages) and not any(s["spool_points"] for s in stats):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers did not finish in time: {len(messages)} published, "
                                   f"{[(s['received'], s['readings'], s['duplicates'], s['rejected']) for s in stats]}")
            time.sleep(0.1)
        ended = time.time()
        first = min(s["first_received_ms"] for s in stats if s["first_received_ms"]) / 1000
        for w in workers:
            w.stop()
        order = order_figures([stored_seqs(w.data_dir) for w in workers], sent)
        by_class = [order_figures([stored_seqs(w.data_dir, events) for w in workers], {})
                    for events in (True, False)]
        order.events_overtook = order.out_of_order_within_a_worker - max(
            b.out_of_order_within_a_worker for b in by_class)
        return WorkersResult(setup, len(workers), len(messages), ended - first, [s["received"] for s in stats],
                             sum(s["duplicates"] for s in stats), sum(sum(s["rejected"].values()) for s in stats),
                             order, load_before, os.getloadavg()[0])
    finally:
        for w in workers:
            w.close()


def run_workers(workdir: Path, broker: MosquittoServer, setups: list[str], count: int) -> list[WorkersResult]:
    street_file, records = street_on_disk(workdir)
    return [run_setup(workdir / setup, broker, street_file, records, setup, count) for setup in setups]


def print_workers(results: list[WorkersResult]) -> None:
    base = next((r.rate for r in results if r.setup == "one"), 0.0)
    print("ingest workers draining a backlog at QoS 1 (SQLite telemetry per worker, one shared registry database):")
    print(f"{'set-up':>9} {'workers':>7} {'messages':>9} {'msg/s':>8} {'speed-up':>8} {'per worker':>16} "
          f"{'dups':>5} {'rejected':>8} {'devices split':>13} {'out of order in a worker':>24} {'each stored once':>16} "
          f"{'load avg':>11}")
    for r in results:
        speedup = f"{r.rate / base:.2f}x" if base else "-"
        print(f"{r.setup:>9} {r.workers:>7} {r.messages:>9,} {r.rate:>8,.0f} {speedup:>8} "
              f"{' / '.join(f'{n:,}' for n in r.per_worker):>16} {r.duplicates:>5} {r.rejected:>8} "
              f"{r.order.split:>6,}/{r.order.devices:<6,} "
              f"{f'{r.order.out_of_order_within_a_worker} ({r.order.events_overtook} by an event)':>24} "
              f"{'yes' if r.order.stored_once else f'NO (-{r.order.missing}, +{r.order.extra})':>16} "
              f"{r.load_before:>5.2f}→{r.load_after:<5.2f}")


def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="wanli-bench-workers-"))
    broker = MosquittoServer(workdir / "mosquitto")
    broker.start()
    try:
        results = run_workers(workdir, broker, args.setup, args.messages)
    finally:
        broker.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_workers(results)
    return 0 if all(r.order.stored_once for r in results) else 1


def add_commands(bench_subparsers: Any) -> None:
    p = bench_subparsers.add_parser("workers", help="one ingest worker against two through shared subscriptions")
    p.add_argument("--messages", type=int, default=50_000)
    p.add_argument("--setup", nargs="+", choices=list(SETUPS), default=list(SETUPS))
    p.add_argument("--keep", action="store_true")
    p.set_defaults(func=main)
