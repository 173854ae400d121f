"""``wanli bench nodered``: a Node-RED flow doing MQTT → InfluxDB on the same backlog, for scale.

Issue 18 asks the full path to be put beside what a plain integration tool moves on the same
two cores. Node-RED (from the npm registry, with ``node-red-contrib-influxdb``) runs one flow:
``mqtt in`` (QoS 1, a persistent session, JSON) → a function node turning each message into one
point (its numeric, string and boolean fields; the kind as measurement, street and device as
tags; the device's clock as time) → ``join`` (1,000 points or 0.2 s) → ``influxdb batch``
(InfluxDB 1.x ``/write``). No validation, no registry, no deduplication, no rules, no spool:
what Wanli does beyond that is the price of the street's rules.

The rate is taken as ``wanli bench ingest`` takes it: the backlog is queued at the broker for the
flow's session while Node-RED is stopped, then Node-RED starts and drains it; the rate runs from
the first message the flow saw to the last batch InfluxDB acknowledged (``complete`` on the
batch node, counted by the flow and read over its HTTP endpoint).

Node-RED is installed once with npm into ``~/.cache/wanli-bench/node-red`` (``--cache`` to move
it); when npm or the registry is not there the command says so and the headline table leaves
the row out with that note.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from simulators.load import build_messages, publish
from tooling.bench_spool import _stored
from tooling.local_servers import InfluxV1Server, MosquittoServer
from tooling.street_files import street_records
from foundation.ports import free_port
from foundation.service_clock import wall_ms

PACKAGES = ("node-red@4.1", "node-red-contrib-influxdb@0.7")
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "wanli-bench" / "node-red"
DATABASE = "nodered"
CLIENT_ID = "wanli-bench-nodered"


@dataclass
class NodeRedResult:
    qos: int
    messages: int
    rate: float  # msg/s, first message seen → last batch acknowledged by InfluxDB
    stored: int  # points the flow's batches carried into InfluxDB
    errors: int  # batches InfluxDB refused
    counted: int  # points counted back in InfluxDB (one a message: the probe's and the backlog's)
    versions: str
    load_before: float
    load_after: float


def install(cache: Path = DEFAULT_CACHE) -> tuple[Path | None, str]:
    """Node-RED's ``red.js`` (installed with npm into ``cache`` if it is not there yet), or None and why."""
    red = cache / "node_modules" / "node-red" / "red.js"
    contrib = cache / "node_modules" / "node-red-contrib-influxdb" / "influxdb.js"
    if red.is_file() and contrib.is_file():
        return red, versions(cache)
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        return None, "Node.js and npm are not installed"
    cache.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(cache),
                               *PACKAGES], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return None, "npm install did not finish in 600 s"
    if done.returncode != 0 or not red.is_file():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return None, f"npm install {' '.join(PACKAGES)} failed: {last[0]}"
    return red, versions(cache)


def versions(cache: Path) -> str:
    def version(package: str) -> str:
        meta = json.loads((cache / "node_modules" / package / "package.json").read_text("utf-8"))
        return f"{package} {meta['version']}"

    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{version('node-red')}, {version('node-red-contrib-influxdb')}, Node.js {node}"


# The function nodes' code (JavaScript, run by Node-RED).
_TO_POINT = """
const p = msg.payload;
const parts = msg.topic.split('/');
if (!flow.get('first')) { flow.set('first', Date.now()); }
flow.set('received', (flow.get('received') || 0) + 1);
const fields = {};
for (const k in p) {
  const v = p[k];
  if (k !== 'v' && k !== 'ts' && (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean')) {
    fields[k] = v;
  }
}
msg.payload = {measurement: parts[3], tags: {street: parts[2], device: parts[4]}, fields: fields,
               timestamp: new Date(p.ts)};
return msg;
"""
_COUNT_STORED = """
flow.set('stored', (flow.get('stored') || 0) + msg.payload.length);
flow.set('last', Date.now());
return null;
"""
_COUNT_ERROR = "flow.set('errors', (flow.get('errors') || 0) + 1); return null;"
_STATS = """
msg.payload = {first: flow.get('first') || 0, last: flow.get('last') || 0, received: flow.get('received') || 0,
               stored: flow.get('stored') || 0, errors: flow.get('errors') || 0};
return msg;
"""


def flow(broker: MosquittoServer, influx_port: int, qos: int) -> list[dict[str, Any]]:
    """The flow: MQTT in → one point a message → batches of 1,000 → InfluxDB 1.x; counters over HTTP."""
    def node(id_: str, type_: str, wires: list[list[str]] | None = None, **fields: Any) -> dict[str, Any]:
        return {"id": id_, "type": type_, "z": "wb-tab", "wires": wires if wires is not None else [], **fields}

    return [
        {"id": "wb-tab", "type": "tab", "label": "wanli bench"},
        {"id": "wb-broker", "type": "mqtt-broker", "broker": broker.host, "port": str(broker.port), "clientid": CLIENT_ID,
         "autoConnect": True, "usetls": False, "protocolVersion": "4", "keepalive": "60", "cleansession": False,
         "autoUnsubscribe": False, "birthTopic": "", "closeTopic": "", "willTopic": ""},
        {"id": "wb-influx", "type": "influxdb", "hostname": "127.0.0.1", "port": str(influx_port), "protocol": "http",
         "database": DATABASE, "usetls": False, "influxdbVersion": "1.x"},
        node("wb-in", "mqtt in", [["wb-point"]], topic="safety/v1/#", qos=str(qos), datatype="json", broker="wb-broker",
             nl=False, rap=True, rh=0, inputs=0),
        node("wb-point", "function", [["wb-join"]], func=_TO_POINT, outputs=1),
        node("wb-join", "join", [["wb-write"]], mode="custom", build="array", property="payload", propertyType="msg",
             key="topic", joiner="\\n", joinerType="str", accumulate=False, timeout="0.2", count="1000",
             reduceRight=False),
        node("wb-write", "influxdb batch", influxdb="wb-influx", precision="ms", retentionPolicy=""),
        node("wb-done", "complete", [["wb-stored"]], scope=["wb-write"], uncaught=False),
        node("wb-stored", "function", [[]], func=_COUNT_STORED, outputs=1),
        node("wb-failed", "catch", [["wb-error"]], scope=["wb-write"], uncaught=False),
        node("wb-error", "function", [[]], func=_COUNT_ERROR, outputs=1),
        node("wb-get", "http in", [["wb-stats"]], url="/stats", method="get"),
        node("wb-stats", "function", [["wb-answer"]], func=_STATS, outputs=1),
        node("wb-answer", "http response", statusCode="", headers={}),
    ]


class NodeRed:
    """Node-RED running the flow, as a child process with its own user directory."""

    def __init__(self, red: Path, workdir: Path, broker: MosquittoServer, influx_port: int, qos: int) -> None:
        self._red = red
        self._dir = workdir
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "flows.json").write_text(json.dumps(flow(broker, influx_port, qos)), "utf-8")
        (workdir / "flows_cred.json").write_text(json.dumps({"wb-influx": {"username": "", "password": ""}}), "utf-8")
        (workdir / "settings.js").write_text(
            "module.exports = {uiHost: '127.0.0.1', uiPort: %d, httpAdminRoot: false, httpNodeRoot: '/',\n"
            "  flowFile: 'flows.json', credentialSecret: false, userDir: %s,\n"
            "  logging: {console: {level: 'warn', metrics: false, audit: false}}};\n"
            % (self.port, json.dumps(str(workdir))), "utf-8")
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = open(workdir / "node-red.log", "ab")

    def start(self, timeout: float = 60.0) -> None:
        self._proc = subprocess.Popen(["node", str(self._red), "--userDir", str(self._dir), "--settings",
                                       str(self._dir / "settings.js")], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"Node-RED exited ({self._proc.returncode}); see {self._dir / 'node-red.log'}")
            try:
                self.stats()
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"Node-RED did not answer within {timeout:.0f} s; see {self._dir / 'node-red.log'}")

    def stats(self) -> dict[str, int]:
        return httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=5).raise_for_status().json()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)  # Node-RED closes its MQTT connection: the session stays
            try:
                self._proc.wait(30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def close(self) -> None:
        self.stop()
        self._log.close()


def street_messages(count: int, qos: int) -> list[tuple[str, bytes]]:
    """The messages ``wanli bench ingest`` drains at this QoS (the same street, mix and seed)."""
    return build_messages(street_records(), count, seed=qos, start_seq=1)


def run_nodered(red: Path, versions_: str, workdir: Path, messages: list[tuple[str, bytes]],
                qos: int = 1) -> NodeRedResult:
    """Node-RED draining a backlog of these messages into InfluxDB 1.x, on a broker and InfluxDB of its own."""
    load_before = os.getloadavg()[0]
    broker = MosquittoServer(workdir / "mosquitto")
    influx = InfluxV1Server(workdir / "influxdb")
    broker.start()
    influx.start()
    red_node: NodeRed | None = None
    try:
        influx.create_database(DATABASE)
        red_node = NodeRed(red, workdir / "node-red", broker, influx.port, qos)
        # Once to make the flow's persistent session and its subscription: a probe goes through.
        red_node.start()
        probe = [("safety/v1/wanli/smoke_detector/PROBE-0001/telemetry",
                  b'{"v":1,"ts":%d,"seq":1,"type":"heartbeat","battery_pct":100.0}' % wall_ms())]
        deadline = time.monotonic() + 30
        while red_node.stats()["stored"] == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the flow's subscription: no probe reached InfluxDB within 30 s")
            publish(probe, broker.host, broker.port, qos=qos)
            time.sleep(0.5)
        red_node.stop()
        publish(messages, broker.host, broker.port, qos=qos)  # queued at the broker for the flow's session
        red_node.start()
        deadline = time.monotonic() + 600
        while sum((s := red_node.stats())[k] for k in ("stored", "errors")) < len(messages):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the flow did not drain the backlog within 600 s: {s}")
            time.sleep(0.1)
        seconds = max((s["last"] - s["first"]) / 1000, 1e-3)
        # InfluxDB of its own, its database made for this run: every point in it (since 0) is the flow's
        counted = _stored(influx, DATABASE, {topic.split("/")[3] for topic, _p in messages}, 0)
        return NodeRedResult(qos, len(messages), len(messages) / seconds, s["stored"], s["errors"], counted, versions_,
                             load_before, os.getloadavg()[0])
    finally:
        if red_node is not None:
            red_node.close()
        influx.stop()
        broker.stop()


def print_result(r: NodeRedResult) -> None:
    print(f"Node-RED MQTT → InfluxDB batch, QoS {r.qos}: {r.rate:,.0f} msg/s ({r.messages:,} messages drained from a "
          f"backlog, {r.stored:,} points acknowledged by InfluxDB and {r.counted:,} counted back, {r.errors} batches "
          f"refused; {r.versions}; "
          f"load {r.load_before:.2f}→{r.load_after:.2f})")


def main(args: argparse.Namespace) -> int:
    red, versions_ = install(Path(args.cache))
    if red is None:
        print(f"Node-RED row skipped: {versions_}")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="wanli-bench-nodered-"))
    try:
        for qos in args.qos:
            print_result(run_nodered(red, versions_, workdir / f"qos{qos}", street_messages(args.messages, qos), qos))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("nodered", help="a Node-RED flow (MQTT in → InfluxDB batch) draining the same backlog as "
                                       "`wanli bench ingest`, for scale")
    p.add_argument("--messages", type=int, default=30_000)
    p.add_argument("--qos", type=int, nargs="+", default=[1], choices=(0, 1))
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="where npm installs Node-RED (once)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.set_defaults(func=main)
