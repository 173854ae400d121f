"""``wanli bench notify``: how long from an elderly resident's press to the family's SMS and the building
leader's WeCom message, through the whole service.

The SMS goes through Gammu's SMS daemon with its dummy phone (when gammu-smsd is installed) and is
timed until the daemon moved it to its sent folder (transmitted); the WeCom robot is a loopback
stand-in answering ``{"errcode": 0}``. Each press is acknowledged, resolved and closed before the
next, so each one opens an incident of its own. Prints p50 / p95 / max, and the time the planning of
attempts adds to the alarm's own transaction.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from alerts.incidents import Action
from alerts.notify.base import Channel, ContactKind
from alerts.notify.gammu import GammuFolders, smsd_config
from alerts.notify.rules import ContactPoint, NotifyRule, RuleStep
from tooling.local_servers import free_port
from foundation.service_clock import wall_ms


def _now() -> int:
    return wall_ms()


class _Robot(BaseHTTPRequestHandler):
    received: list[int] = []

    def log_message(self, *_a: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", "0")))
        _Robot.received.append(_now())
        raw = json.dumps({"errcode": 0, "errmsg": "ok"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(args: argparse.Namespace) -> int:
    from simulators.building import BuildingSimulation
    from devices.kinds.elderly_alarm.simulator import ElderlyAlarmSim
    from foundation.mqtt import new_client
    from wanli.runtime import running_in_thread
    from wanli.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="wanli-bench-notify-"))
    robot = ThreadingHTTPServer(("127.0.0.1", 0), _Robot)
    threading.Thread(target=robot.serve_forever, daemon=True).start()
    folders = GammuFolders.under(work / "gammu")
    folders.create()
    smsd = shutil.which("gammu-smsd")
    daemon = None
    if smsd:
        (work / "gammu" / "dummy").mkdir()
        (work / "gammu" / "smsdrc").write_text(smsd_config(folders, work / "gammu" / "dummy"))
        daemon = subprocess.Popen([smsd, "-c", str(work / "gammu" / "smsdrc")], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    settings = Settings(data_dir=work / "data", embedded_broker_port=free_port(), http_port=0,
                        simulate_building=False, mqtt_client_id=f"wanli-bench-notify-{free_port()}",
                        notify_tick_s=0.2, notify_gammu_dir=work / "gammu", notify_wecom_enabled=True,
                        notify_wecom_url=f"http://127.0.0.1:{robot.server_address[1]}/cgi-bin/webhook/send",
                        notify_rate_limit=1000)
    sms_s: list[float] = []
    wecom_s: list[float] = []
    plan_ms: list[float] = []
    try:
        with running_in_thread(settings) as service:
            notifier = service.services.notifier
            assert notifier is not None and service.broker is not None
            original = notifier.plan_notices

            def timed(*a: Any, **kw: Any) -> int:
                t0 = time.perf_counter()
                try:
                    return original(*a, **kw)
                finally:
                    plan_ms.append((time.perf_counter() - t0) * 1000)

            service.services.outbox._plan = timed  # noqa: SLF001 - the bench times the hook the outbox calls
            store = notifier.store
            store.replace_contact_points("楼组长 李阿姨", [ContactPoint("楼组长 李阿姨", ContactKind.WECOM,
                                                                      "bench-robot-key-01")], "bench", _now())
            for role, first in (("family", Channel.SMS), ("building_leader", Channel.WECOM)):
                store.put_rule(NotifyRule(role, "critical", (RuleStep(0, (first,)),)), "bench", _now())
            store.put_rule(NotifyRule("*", "critical", ()), "bench", _now())
            sim = BuildingSimulation(service.services.hierarchy.building("xq-01"))
            service.services.registry.register_many(sim.records(), actor="bench", now_ms=_now())
            device = next(p.device for p in sim.placed if isinstance(p.device, ElderlyAlarmSim) and p.unit == "0601")
            client = new_client(f"bench-{_now()}")
            client.connect(service.broker.host, service.broker.port)
            client.loop_start()
            for _ in range(args.presses):
                sent_before = set(folders.sent.iterdir()) | set(folders.outbox.iterdir())
                robots_before = len(_Robot.received)
                topic, payload = device.press(_now())
                t0 = _now()
                client.publish(topic, payload, qos=1).wait_for_publish(10)
                target = folders.sent if daemon else folders.outbox
                deadline = time.monotonic() + 30
                sms_at = wecom_at = None
                while time.monotonic() < deadline and (sms_at is None or wecom_at is None):
                    if sms_at is None and set(target.iterdir()) - sent_before:
                        sms_at = _now()
                    if wecom_at is None and len(_Robot.received) > robots_before:
                        wecom_at = _Robot.received[robots_before]
                    time.sleep(0.005)
                if sms_at is None or wecom_at is None:
                    print("a press was not delivered within 30 s")
                    return 1
                sms_s.append((sms_at - t0) / 1000)
                wecom_s.append((wecom_at - t0) / 1000)
                incident = next(i for i in service.services.alerts.active() if i.device_id == device.device_id)
                for action in (Action.ACKNOWLEDGE, Action.RESOLVE, Action.VERIFY):
                    service.services.alerts.act(incident.id, action, "bench", "", _now())
            client.loop_stop()
            client.disconnect()
    finally:
        robot.shutdown()
        if daemon is not None:
            daemon.terminate()
            daemon.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    how = "gammu-smsd sent folder (dummy phone)" if daemon else "Gammu outbox file (no gammu-smsd installed)"
    print(f"press → family SMS, {how}: p50 {statistics.median(sms_s):.2f} s, p95 {_pct(sms_s, 0.95):.2f} s, "
          f"max {max(sms_s):.2f} s ({len(sms_s)} presses)")
    print(f"press → building leader's WeCom robot (loopback stand-in): p50 {statistics.median(wecom_s):.2f} s, "
          f"p95 {_pct(wecom_s, 0.95):.2f} s, max {max(wecom_s):.2f} s")
    if plan_ms:
        print(f"planning attempts inside the alarm's transaction: p50 {statistics.median(plan_ms):.1f} ms, "
              f"max {max(plan_ms):.1f} ms ({len(plan_ms)} calls)")
    return 0


def add_commands(bench: Any) -> None:
    notify = bench.add_parser("notify", help="press → the family's SMS (gammu-smsd) and the leader's WeCom, timed")
    notify.add_argument("--presses", type=int, default=20)
    notify.set_defaults(func=main)
