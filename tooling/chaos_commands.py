"""``wanli chaos``: the command that runs each fault (``tooling.chaos``, ``tooling.chaos_alarm_path``,
``tooling.chaos_host_loss``) against servers of its own and prints one table.

It sits above the fault modules, which share ``tooling.chaos``' helpers, so that the command composing
them does not make a circle with the helpers' module.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tooling.chaos import (FaultReport, broker_restart_under_load, format_table, influx_outage_under_load,
                         kill_ingest_mid_storm, restart_with_pending_deadlines)
from tooling.local_servers import InfluxV1Server, MosquittoServer, free_port


# --- the command --------------------------------------------------------------------------


FAULTS = ("kill", "influx", "broker", "deadlines", "alarm-path", "host-loss")


def run_all(workdir: Path, only: Sequence[str], heavy: bool, minutes: float, storm: int) -> list[FaultReport]:
    broker = MosquittoServer(workdir / "mosquitto", port=free_port())
    influx = InfluxV1Server(workdir / "influxdb", port=free_port(), rpc_port=free_port())
    reports: list[FaultReport] = []
    broker.start()
    influx.start()
    try:
        street = None
        if heavy:
            from devices.street_generator import generate_street

            street = workdir / "street.json"
            street.write_text(json.dumps(generate_street(seed=1), ensure_ascii=False), "utf-8")
        for fault in only:
            print(f"chaos: {fault} …", file=sys.stderr, flush=True)
            match fault:
                case "kill":
                    reports.append(kill_ingest_mid_storm(
                        workdir / "kill", broker, devices=storm, rate=1000 if heavy else 400, kills=3 if heavy else 1,
                        down_s=3 if heavy else 1, hierarchy_file=street))
                case "influx":
                    reports.append(influx_outage_under_load(
                        workdir / "influx", broker, influx, devices=2000 if heavy else 200,
                        rate=500 if heavy else 200, before_s=10 if heavy else 2, outage_s=minutes * 60 if heavy else 5,
                        after_s=30 if heavy else 2))
                case "broker":
                    reports.append(broker_restart_under_load(
                        workdir / "broker", broker, devices=storm, rate=500 if heavy else 100,
                        restarts=3 if heavy else 1, down_s=5 if heavy else 1))
                case "deadlines":
                    reports.append(restart_with_pending_deadlines(
                        workdir / "deadlines", broker, incidents=200 if heavy else 20, downtime_s=70,
                        shift_clock=not heavy))
            print(format_table(reports[-1:]), file=sys.stderr, flush=True)
    finally:
        influx.stop()
        broker.stop()
    return reports


def _cmd_chaos(args: argparse.Namespace) -> int:
    only = args.only or list(FAULTS)
    storm = args.storm or (20_000 if args.heavy else 300)
    alarm_path = "alarm-path" in only
    host_loss = "host-loss" in only
    only = [f for f in only if f not in ("alarm-path", "host-loss")]
    with contextlib.ExitStack() as stack:
        if args.keep:
            workdir = Path(tempfile.mkdtemp(prefix="wanli-chaos-"))
            stack.callback(lambda: print(f"kept: {workdir}", file=sys.stderr))
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wanli-chaos-")))
        reports = run_all(workdir, only, args.heavy, args.minutes, storm) if only else []
        path_reports = _run_alarm_path(workdir / "alarm-path", 100 if args.heavy else 30) if alarm_path else []
        loss_reports = _run_host_loss(workdir / "host-loss", args.kills) if host_loss else []
    if reports:
        print(format_table(reports))
    if path_reports:
        from tooling.chaos_alarm_path import format_alarm_path_table

        print(format_alarm_path_table(path_reports))
    if loss_reports:
        from tooling.chaos_host_loss import format_host_loss_table

        print(format_host_loss_table(loss_reports))
    return 0 if all(r.ok for r in (*reports, *path_reports, *loss_reports)) else 1


def _run_host_loss(workdir: Path, kills: int) -> list[Any]:
    """Two instances on their own PostgreSQL and Mosquitto: the ingest holder killed ``kills`` times, then
    frozen for 30 s (tooling/chaos_host_loss.py)."""
    from tooling.chaos_host_loss import format_host_loss_table, host_loss
    from tooling.local_servers import PostgresServer

    broker = MosquittoServer(workdir / "mosquitto", port=free_port())
    postgres = PostgresServer(workdir / "postgres", port=free_port())
    broker.start()
    postgres.start()
    reports = []
    try:
        for name, kw in (("kills", {"kills": kills}), ("freeze", {"freeze_s": 30.0, "rate": 8.0})):
            print(f"chaos: host-loss ({name}) …", file=sys.stderr, flush=True)
            url = postgres.create_database(f"host_loss_{name}")
            reports.append(host_loss(workdir / name, broker, url, **kw))
            print(format_host_loss_table(reports[-1:]), file=sys.stderr, flush=True)
    finally:
        postgres.stop()
        postgres.remove_data()
        broker.stop()
    return reports


def _run_alarm_path(workdir: Path, detectors: int) -> list[Any]:
    from tooling.chaos_alarm_path import run_alarm_path

    broker = MosquittoServer(workdir / "mosquitto", port=free_port())
    influx = InfluxV1Server(workdir / "influxdb", port=free_port(), rpc_port=free_port())
    broker.start()
    influx.start()
    try:
        return run_alarm_path(workdir, broker, influx, detectors)
    finally:
        influx.stop()
        broker.stop()


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    chaos = sub.add_parser("chaos", help="inject faults (kill -9, InfluxDB and broker outages, restarts, the alarm "
                                         "path's faults, the loss of a host) and report",
                           description="Starts its own Mosquitto and InfluxDB, runs the service as a child process, "
                                       "injects each fault under load and prints what was lost or doubled.")
    chaos.add_argument("--only", action="append", choices=FAULTS, help="run only this fault (repeatable)")
    chaos.add_argument("--heavy", action="store_true",
                       help="the heavy versions: a big storm on the whole generated street, several kills and "
                            "restarts, InfluxDB down for --minutes, escalation with a real 70 s downtime")
    chaos.add_argument("--minutes", type=float, default=3.0, help="InfluxDB outage in --heavy (default 3)")
    chaos.add_argument("--storm", type=int, help="detectors alarming in the kill and broker faults "
                                                 "(default 300; 20,000 with --heavy)")
    chaos.add_argument("--kills", type=int, default=10, help="host-loss: how many times the ingest holder is "
                                                              "killed (default 10)")
    chaos.add_argument("--keep", action="store_true", help="keep the work dir (logs, data)")
    chaos.set_defaults(func=_cmd_chaos)
