"""``wanli bench`` (or ``wanli bench all``): the headline figures in one table.

Runs the parts, each with its own servers, at sizes that finish in a few minutes:

1. ``wanli bench ingest`` at QoS 1 (``--qos 0 1`` for both): the full path's throughput
   draining a backlog, its ratio to the raw broker ceiling (``mosquitto_sub`` draining the
   same backlog), and the service's peak memory (VmHWM of its process plus its receiver);
   beside it a Node-RED flow doing MQTT → InfluxDB on the same backlog (``wanli bench nodered``;
   ``--skip-nodered``, or a note in its row when npm cannot install it);
   then an overload (``--overload-seconds``, QoS 1): publishers offer three times the full-path
   rate (as near as the cores allow) while the service's memory is sampled; the row says what was
   offered, what was lost and how memory moved after warm-up;
2. ``wanli bench alerts``' live run: smoke alarms published → incident committed, p50 / p99,
   under background telemetry asked at 10,000 msg/s from two publisher processes (issue 18's
   figure; ``--background-rate`` to choose), the rate reached printed beside it;
3. ``wanli bench spool``: the spool's replay rate into InfluxDB 1.x after an outage;
4. ``wanli bench access``' managed side: credentials → first connect and the broker's longest
   stall with the whole street credentialed (``--access-changes`` changes; 0 to skip).

Each row carries the machine's 1-minute load average when it was measured: the two cores
are shared, and a figure taken at load 8 is not one taken at load 0.5.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tooling.bench import PathResult, run_ingest
from tooling.bench_alerts import _street, run_latency
from tooling.bench_nodered import install, run_nodered, street_messages
from tooling.bench_spool import run_spool
from tooling.local_servers import InfluxV1Server


@dataclass
class Row:
    figure: str
    value: str
    detail: str
    load: str


def run_all(workdir: Path, *, messages: int, qos: list[int], background_rate: float, seconds: float,
            alarm_every_ms: int, spool_points: int, access_changes: int = 0, nodered: bool = True,
            overload_s: float = 0.0, publishers: int = 2) -> list[Row]:
    rows: list[Row] = []
    load = os.getloadavg()[0]
    (workdir / "ingest").mkdir(parents=True)
    results, overload = run_ingest(messages, qos, workdir / "ingest", overload_s)
    load_ingest = f"{load:.2f}→{os.getloadavg()[0]:.2f}"
    for r in results:
        rows.append(Row(f"full-path throughput, QoS {r.qos}", f"{r.full_rate:,.0f} msg/s",
                        f"{r.messages:,} messages drained from a backlog, stored in InfluxDB; main lane's receiver "
                        f"{os.environ.get('WANLI_INGEST_RECEIVER', 'paho')}", load_ingest))
        rows.append(Row(f"raw broker ceiling, QoS {r.qos}", f"{r.raw_rate:,.0f} msg/s",
                        "mosquitto_sub draining the same backlog", load_ingest))
        rows.append(Row(f"ratio full path / raw, QoS {r.qos}", f"{r.ratio:.3f}", "", load_ingest))
        if r.cpu is not None:
            rows.append(Row(f"full path's CPU a message, QoS {r.qos}", f"{r.cpu.service_us + r.cpu.receivers_us:.0f} µs",
                            f"service {r.cpu.service_us:.1f} (busiest thread {r.cpu.busiest_thread_us:.1f}) + receivers "
                            f"{r.cpu.receivers_us:.1f}; Mosquitto {r.cpu.broker_us:.1f}, InfluxDB "
                            f"{r.cpu.influxdb_us:.1f}; wall {r.cpu.wall_us:.1f}; over the drain's last {r.cpu.messages:,} "
                            "messages (from the first poll once the service answers)", load_ingest))
        rows.append(Row(f"device clock → committed, QoS {r.qos}", f"{r.committed_p50:.0f} / {r.committed_p99:.0f} ms",
                        f"p50 / p99, every message, live at {r.publish_rate:,.0f} msg/s", load_ingest))
    peak = max(r.peak_rss_mb for r in results)
    rows.append(Row("peak memory, service + receiver", f"{peak:.0f} MB", "VmHWM after the drains (50,615 devices "
                    "registered)", load_ingest))
    if overload is not None:
        o = overload
        rows.append(Row("memory under overload, QoS 1", f"{o.growth_mb:+.0f} MB",
                        f"RSS growth after 10 s warm-up ({o.rss_mb[0]:.0f} → {o.rss_mb[-1]:.0f} MB); offered "
                        f"{o.offered_rate:,.0f} msg/s = {o.offered_rate / o.full_rate:.1f}x the full path for "
                        f"{o.seconds:.0f} s; {o.published:,} published, {o.published - o.received:,} lost",
                        f"{load:.2f}→{os.getloadavg()[0]:.2f}"))

    if nodered:
        rows.extend(_nodered_rows(workdir / "nodered", messages, results))

    rate = background_rate
    (workdir / "alerts").mkdir(parents=True)
    street_file, records = _street(workdir / "alerts")
    lat = run_latency(workdir / "alerts", street_file, records, rate, seconds, alarm_every_ms, publishers, 1)
    rows.append(Row("smoke alarm → incident committed", f"{lat.p50_ms:.0f} / {lat.p99_ms:.0f} ms",
                    f"p50 / p99 (max {lat.max_ms:.0f}), {lat.alarms_committed}/{lat.alarms_sent} alarms, background "
                    f"telemetry {lat.background_rate:,.0f} msg/s (target {rate:,.0f})",
                    f"{lat.load_before:.2f}→{lat.load_after:.2f}"))

    influx = InfluxV1Server(workdir / "spool-influxdb")
    influx.start()
    try:
        s = run_spool(workdir / "spool", influx, spool_points)
    finally:
        influx.stop()
    rows.append(Row("spool replay into InfluxDB 1.x", f"{s.rate:,.0f} points/s",
                    f"{s.points:,} points spooled during an outage, {s.seconds:.1f} s to drain, "
                    f"{s.stored:,}/{s.expected_stored:,} counted back; InfluxDB alone {s.alone_rate:,.0f} points/s "
                    f"(ratio {s.ratio:.2f})", f"{s.load_before:.2f}→{s.load_after:.2f}"))

    if access_changes:
        from tooling.bench_access import Managed, run_side, street

        (workdir / "access").mkdir(parents=True)
        load = os.getloadavg()[0]
        access_street, access_records = street(0, workdir / "access")
        side = Managed(workdir / "access" / "managed", access_records, access_street)
        try:
            a = run_side(side, access_changes, 30.0, random.Random(0))
        finally:
            side.close()
        rows.append(Row("device credentials → first connect", f"{a.pct(50):.2f} / {a.pct(99):.2f} s",
                        f"p50 / p99 over {len(a.connect_s)} changes ({a.lost} lost), {a.devices:,} devices "
                        f"credentialed; longest broker stall {a.stall_ms:.0f} ms; bulk for the street {a.bulk_s:.1f} s",
                        f"{load:.2f}→{os.getloadavg()[0]:.2f}"))
    return rows


def _nodered_rows(workdir: Path, messages: int, results: list[PathResult]) -> list[Row]:
    """Node-RED's MQTT → InfluxDB flow on the same backlog, and the full path's ratio to it; a note if it cannot run."""
    red, versions = install()
    if red is None:
        return [Row("Node-RED MQTT → InfluxDB batch", "skipped", versions, "")]
    rows = []
    for r in results:
        n = run_nodered(red, versions, workdir / f"qos{r.qos}", street_messages(messages, r.qos), r.qos)
        load = f"{n.load_before:.2f}→{n.load_after:.2f}"
        rows.append(Row(f"Node-RED MQTT → InfluxDB batch, QoS {r.qos}", f"{n.rate:,.0f} msg/s",
                        f"the same backlog, no validation or rules ({n.counted:,} points counted back; {versions})",
                        load))
        rows.append(Row(f"ratio full path / Node-RED, QoS {r.qos}", f"{r.full_rate / n.rate:.2f}", "", load))
    return rows


def print_rows(rows: list[Row]) -> None:
    w = max(len(r.figure) for r in rows)
    v = max(len(r.value) for r in rows)
    print(f"{'figure':<{w}}  {'value':>{v}}  {'load avg':<11}  detail")
    for r in rows:
        print(f"{r.figure:<{w}}  {r.value:>{v}}  {r.load:<11}  {r.detail}")


def main(args: argparse.Namespace) -> int:
    if args.receiver:  # the services it starts read their settings from the environment
        os.environ["WANLI_INGEST_RECEIVER"] = args.receiver
    workdir = Path(tempfile.mkdtemp(prefix="wanli-bench-all-"))
    try:
        rows = run_all(workdir, messages=args.messages, qos=args.qos, background_rate=args.background_rate,
                       seconds=args.seconds, alarm_every_ms=args.alarm_every_ms, spool_points=args.spool_points,
                       access_changes=args.access_changes, nodered=not args.skip_nodered,
                       overload_s=args.overload_seconds, publishers=args.publishers)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print_rows(rows)
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--messages", type=int, default=30_000, help="backlog for the throughput runs (default 30,000)")
    p.add_argument("--qos", type=int, nargs="+", default=[1], choices=[0, 1])
    p.add_argument("--background-rate", type=float, default=10_000.0,
                   help="telemetry msg/s asked for behind the alarms (default 10,000; the rate reached is printed)")
    p.add_argument("--publishers", type=int, default=2, help="background publisher processes (default 2)")
    p.add_argument("--overload-seconds", type=float, default=20.0,
                   help="offer 3x the full-path rate at QoS 1 this long and watch memory (default 20; 0: skip)")
    p.add_argument("--seconds", type=float, default=20.0, help="how long alarms are sent (default 20)")
    p.add_argument("--alarm-every-ms", type=int, default=200)
    p.add_argument("--spool-points", type=int, default=100_000)
    p.add_argument("--access-changes", type=int, default=10,
                   help="credential changes timed on the managed broker with the street credentialed (0: skip)")
    p.add_argument("--skip-nodered", action="store_true",
                   help="leave out the Node-RED flow beside the full path (wanli bench nodered)")
    p.add_argument("--receiver", choices=["paho", "bulk"],
                   help="the services' main-lane MQTT receiver (WANLI_INGEST_RECEIVER; default: as set, else paho)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")


def _bare(_args: argparse.Namespace) -> int:
    """Bare ``wanli bench``: ``wanli bench all`` with its defaults."""
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    return main(defaults.parse_args([]))


def add_commands(bench_parser: argparse.ArgumentParser, bench_subparsers: Any) -> None:
    """``wanli bench all``, and bare ``wanli bench`` meaning the same with its defaults."""
    bench_parser.set_defaults(func=_bare)
    p = bench_subparsers.add_parser("all", help="the headline figures in one table (also: bare `wanli bench`)")
    add_arguments(p)
    p.set_defaults(func=main)
