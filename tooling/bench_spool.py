"""``wanli bench spool``: how fast the telemetry spool drains into a real InfluxDB 1.x after an outage.

The spool (``ingest/spool.py``) keeps every point on local disk until the store has it, so
an InfluxDB outage costs nothing but a backlog; how long the backlog takes to go after the
store is back is the replay rate. This bench reproduces it with the service's own pieces:

1. a real InfluxDB (``tooling/local_servers.py``) with the database made and every series of
   the points below already in it (a point each, a day older: the service wrote to it before
   the outage), then **stopped**;
2. ``--points`` points of the load mix (``simulators/load.py``, decoded and turned into points
   exactly as ingest does, in ingest's batches of 2,000 messages) appended to a ``Spool``
   on local disk while the store is away: the drainer's first attempt fails
   (``StoreUnavailable``), as it does during an outage;
3. InfluxDB started again; the clock runs while ``SpoolDrainer.drain_once`` (what the
   drainer thread runs, ``batch_points`` per write) moves everything, until the spool is
   empty; then every point is counted back in InfluxDB;
4. InfluxDB alone, for the ratio: the same points, as line protocol built beforehand, posted
   in the same request sizes into another database with the same series already in it (no
   spool, no Python per point).

``--form points`` keeps the spool's rows as msgpack points (as the embedded store's spool
does, and every spool did before issue 18), ``lines`` as line protocol (a store that takes
it). Beside the rates, this process's CPU per point appending and draining: what the spool
costs the service's interpreter, which ingest shares.

The rate is points per second from the store's return to an empty spool. The drainer in a
running service also shares its process with ingest; this one runs alone (an upper bound
for the drainer; the service's own catching up is in ``wanli chaos --only influx``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.catalog import KINDS
from ingest.decode import decode_message
from ingest.line_protocol import encode_bytes
from ingest.points import TelemetryPoint, points_of_all
from ingest.spool import Spool, SpoolDrainer
from ingest.telemetry import InfluxV1TelemetryStore
from simulators.load import build_messages, stamp
from foundation.errors import StoreUnavailable
from tooling.local_servers import InfluxV1Server
from tooling.street_files import street_records
from foundation.service_clock import wall_ms

INGEST_BATCH = 2000  # messages per ingest batch: one spool append each


@dataclass
class SpoolResult:
    points: int
    messages: int
    batch_points: int
    seconds: float
    stored: int  # counted back in InfluxDB (points carrying ``seq``)
    expected_stored: int
    first_attempt_failed: bool
    spool_bytes: int  # the spool's files on disk, full
    load_before: float
    load_after: float
    form: str = "lines"
    alone_rate: float = 0.0  # InfluxDB alone: the same lines, prebuilt, in the same request sizes
    append_cpu_s: float = 0.0  # this process's CPU appending every batch (a LINES spool encodes here)
    drain_cpu_s: float = 0.0  # this process's CPU draining (what the drainer costs the service's interpreter)

    @property
    def rate(self) -> float:
        return self.points / self.seconds if self.seconds else 0.0

    @property
    def ratio(self) -> float:
        return self.rate / self.alone_rate if self.alone_rate else 0.0


def spool_points(count: int, seed: int = 3) -> tuple[int, list[list[TelemetryPoint]]]:
    """About ``count`` points of the load mix, in ingest's batches; (messages, batches of points)."""
    records = street_records()
    now = wall_ms()
    batches: list[list[TelemetryPoint]] = []
    made = messages = 0
    while made < count:
        raw = build_messages(records, INGEST_BATCH, seed=seed + len(batches), start_seq=1 + messages)
        t0 = now - 3_600_000 + messages  # distinct times: no point overwrites another in InfluxDB
        readings = [decode_message(topic, stamp(payload, t0 + i), now, KINDS) for i, (topic, payload) in enumerate(raw)]
        points = points_of_all(readings)
        batches.append(points)
        made += len(points)
        messages += len(raw)
    return messages, batches


def _stored(influx: InfluxV1Server, database: str, measurements: set[str], since_ms: int) -> int:
    total = 0
    for m in sorted(measurements):
        result = influx.query(f"SELECT count(seq) FROM {m} WHERE time >= {since_ms}ms", database)["results"][0]
        total += int(result["series"][0]["values"][0][1]) if result.get("series") else 0
    return total


def run_spool(workdir: Path, influx: InfluxV1Server, points: int = 200_000, batch_points: int = 5000,
              form: str = "lines") -> SpoolResult:
    """Fill a spool while ``influx`` is stopped, start it, time the drain. ``influx`` must be running on entry."""
    messages, batches = spool_points(points)
    database = f"spool_{time.time_ns()}"
    store = InfluxV1TelemetryStore(influx.url, database, timeout_s=60)
    spool = Spool(workdir / "spool.db", keep_lines=form == "lines")
    all_points = [p for b in batches for p in b]
    try:
        _series_before(store, all_points)
        influx.stop()  # the outage
        now = wall_ms()
        cpu = time.process_time()
        for batch in batches:
            spool.append(batch, now)
        append_cpu_s = time.process_time() - cpu
        drainer = SpoolDrainer(spool, store, batch_points=batch_points)
        try:
            drainer.drain_once()
            failed = False
        except StoreUnavailable:
            failed = True
        spool_bytes = sum(f.stat().st_size for f in workdir.glob("spool.db*"))
        influx.start()  # back
        load_before = os.getloadavg()[0]
        total = spool.state().points
        started, cpu = time.perf_counter(), time.process_time()
        while drainer.drain_once():
            pass
        seconds, drain_cpu_s = time.perf_counter() - started, time.process_time() - cpu
        expected = sum(1 for p in all_points if "seq" in p.fields)
        stored = _stored(influx, database, {p.measurement for p in all_points}, min(p.ts_ms for p in all_points))
        alone = _influx_alone(influx, all_points, batch_points)
        return SpoolResult(total, messages, batch_points, seconds, stored, expected, failed, spool_bytes, load_before,
                           os.getloadavg()[0], form, alone, append_cpu_s, drain_cpu_s)
    finally:
        spool.close()
        store.close()
        if not influx.running:
            influx.start()


def _series_before(store: InfluxV1TelemetryStore, points: list[TelemetryPoint]) -> None:
    """Make the database with every series of ``points`` in it: one point each, a day before."""
    store.ensure_database()
    first = {(p.measurement, *p.tags.values(), *p.tags): p for p in reversed(points)}
    older = [TelemetryPoint(p.measurement, p.tags, p.fields, p.ts_ms - 86_400_000) for p in first.values()]
    for i in range(0, len(older), 50_000):
        store.write_points(older[i:i + 50_000])


def _influx_alone(influx: InfluxV1Server, points: list[TelemetryPoint], batch_points: int) -> float:
    """Points per second InfluxDB takes the same points at, prebuilt as line protocol, in the same request sizes."""
    store = InfluxV1TelemetryStore(influx.url, f"alone_{time.time_ns()}", timeout_s=60)
    try:
        _series_before(store, points)
        bodies = [(encode_bytes(points[i:i + batch_points]), len(points[i:i + batch_points]))
                  for i in range(0, len(points), batch_points)]
        started = time.perf_counter()
        for body, count in bodies:
            store.write_lines(body, count)
        return len(points) / (time.perf_counter() - started)
    finally:
        store.close()


def print_spool(r: SpoolResult) -> None:
    print(f"spool replay into InfluxDB 1.x after an outage ({r.form} in the spool): {r.points:,} points "
          f"({r.messages:,} messages) drained in {r.seconds:.2f} s = {r.rate:,.0f} points/s, {r.batch_points:,} points "
          f"a write; InfluxDB alone (the same lines prebuilt, the same writes) {r.alone_rate:,.0f} points/s: ratio "
          f"{r.ratio:.2f}; this process's CPU a point: append {r.append_cpu_s * 1e6 / max(r.points, 1):.2f} µs, "
          f"drain {r.drain_cpu_s * 1e6 / max(r.points, 1):.2f} µs; "
          f"{r.stored:,} of {r.expected_stored:,} counted back in InfluxDB; spool on disk {r.spool_bytes / 1e6:.1f} MB "
          f"({r.spool_bytes / max(r.points, 1):.0f} bytes a point); "
          f"first attempt during the outage {'failed, as it should' if r.first_attempt_failed else 'SUCCEEDED (?)'}; "
          f"load avg {r.load_before:.2f} → {r.load_after:.2f}")


def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="wanli-bench-spool-"))
    influx = InfluxV1Server(workdir / "influxdb")
    influx.start()
    try:
        results = [run_spool(workdir / f"run-{b}-{form}", influx, args.points, b, form)
                   for form in args.form for b in args.batch_points]
    finally:
        influx.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    for r in results:
        print_spool(r)
    return 0 if all(r.stored == r.expected_stored for r in results) else 1


def add_commands(bench_subparsers: Any) -> None:
    p = bench_subparsers.add_parser("spool", help="the telemetry spool's replay rate into InfluxDB 1.x after an outage")
    p.add_argument("--points", type=int, default=200_000)
    p.add_argument("--batch-points", type=int, nargs="+", default=[5000],
                   help="points per write (several: one run each)")
    p.add_argument("--form", nargs="+", default=["lines"], choices=["lines", "points"],
                   help="what the spool keeps: line protocol, or msgpack points (several: one run each)")
    p.add_argument("--keep", action="store_true")
    p.set_defaults(func=main)

