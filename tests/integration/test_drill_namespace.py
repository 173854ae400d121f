"""A drill beside real devices on a live street (issue 16; devices/drill.py), on a real Mosquitto.

`wanli simulate alarm` and `wanli simulate building` run as the tester would, in their own
processes against a running service, while a real detector in the same building keeps
publishing: every one of the real detector's messages is accepted (none dead-lettered, its
sequence its own), the drill's incident is marked drill and reaches nobody real (no
`dispatch/…` notice, nothing to the city webhook, people only through the drill contacts), a
retired real device stays retired and no real label changes, and everything the drill
registered is archived afterwards. The real detector's own alarm after the drill is a real
incident that does reach the webhook.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devices.kinds.smoke_detector.simulator import SmokeDetectorSim
from tests.fixtures.notify_servers import ContractServer, contract_server  # noqa: F401 - fixture
from tests.fixtures.servers import MosquittoServer
from tests.fixtures.service import ServiceFactory, new_token, now_ms, publish, register_building, wait_for
from foundation.mqtt import Subscriber

pytestmark = pytest.mark.mosquitto

REAL, NEIGHBOUR = "SD-XQ01-0301", "SD-XQ01-0302"
LEADER, LEADER_KEY, DRILL_KEY = "楼组长 李阿姨", "wecom-key-building-xq01", "wecom-key-drill"


class Webhook:
    """The city platform's webhook: records every notice POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers.get("content-length", "0")))))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


class Listener:
    """Everything the platform publishes, real notices (dispatch/#) and a drill's (drill/#)."""

    def __init__(self, broker: MosquittoServer) -> None:
        self.got: list[tuple[str, dict[str, object]]] = []
        self._subscriber = Subscriber(broker.host, broker.port, ["dispatch/#", "drill/#"],
                                      lambda m: self.got.append((m.topic, json.loads(m.payload))),
                                      client_id=f"ear-{now_ms()}")
        assert self._subscriber.wait(10)

    def about(self, incident_id: str) -> list[str]:
        return [t for t, body in self.got if body.get("incident_id") == incident_id]

    def close(self) -> None:
        self._subscriber.close()


def wanli(*args: str, token: str, data_dir: Path, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANLI_TOKEN": token, "WANLI_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "wanli.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)


def test_a_drill_beside_a_real_detector_accepts_all_its_messages_and_pages_nobody_real(
        service_factory: ServiceFactory, mosquitto: MosquittoServer, webhook: Webhook, contract_server: ContractServer,
        tmp_path: Path) -> None:
    contract_server.wecom_keys.add(DRILL_KEY)
    service = service_factory(mqtt_url=mosquitto.url, alert_tick_s=0.1, webhook_url=webhook.url, notify_tick_s=0.1,
                              notify_wecom_enabled=True, notify_wecom_url=f"{contract_server.url}/cgi-bin/webhook/send",
                              notify_drill_contacts=f"演练群=wecom:{DRILL_KEY}")
    op = service_factory.client(service, "operator")  # the building leader is reached on WeCom, as operators set it
    assert op.put(f"/api/notify/people/{LEADER}/contact-points",
                  json=[{"kind": "wecom", "address": LEADER_KEY, "priority": 0}]).status_code == 200
    assert op.put("/api/notify/rules/*/high", json=[{"after_s": 0, "channels": ["wecom"]}]).status_code == 200
    registry = service.services.registry
    register_building(service)  # 香泉1号楼's real devices
    registry.retire(NEIGHBOUR, "test", now_ms(), reason="stolen")
    labels = {r.device_id: (r.label, r.building_id, r.floor, r.unit, r.lifecycle) for r in registry.list(
        now_ms=now_ms(), building_id="xq-01", lifecycle=None, limit=10_000)}
    token = new_token(service, "tester")
    api, broker = ["--api", service.http_url], ["--mqtt-url", mosquitto.url]
    ear = Listener(mosquitto)
    real = SmokeDetectorSim(REAL, seq=1)  # a real detector numbering from 1: far behind any simulator's numbers
    sent = 0
    try:
        publish(mosquitto.host, mosquitto.port, [real.heartbeat(now_ms())])
        sent += 1

        # The drill: the real detector's twin alarms in its unit; the station's twin answers its dispatch.
        done = wanli("simulate", "alarm", REAL, *api, *broker, "--answer-for", "30", token=token, data_dir=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "DRILL-SD-XQ01-0301" in done.stdout and "演练" in done.stdout
        drill = wait_for(lambda: next((i for i in service.services.alerts.active()
                                       if i.drill and i.state.value == "on_scene"), None))
        assert drill.device_id == "DRILL-SD-XQ01-0301" and drill.location.unit == "0301"
        assert "DRILL-MFS-XQ" in drill.acknowledged_by  # its own station answered: nothing left to climb
        assert not [i for i in service.services.alerts.active() if i.condition.startswith("dispatch_")]
        publish(mosquitto.host, mosquitto.port, [real.heartbeat(now_ms())])  # the real one goes on, as always
        sent += 1

        # A whole building's drill beside it: 80-odd twins for 3 s, then archived.
        done = wanli("simulate", "building", "xq-01", *api, *broker, "--duration", "3", token=token, data_dir=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "\x1b[" not in done.stderr  # not a terminal: no escape codes
        heartbeat = real.heartbeat(now_ms())
        publish(mosquitto.host, mosquitto.port, [heartbeat])
        viewer = service_factory.client(service, "viewer")
        wait_for(lambda: registry.get(REAL).last_seen_ms == json.loads(heartbeat[1])["ts"])
        publish(mosquitto.host, mosquitto.port, [real.alarm(now_ms() + 1)])
        sent += 2

        # Every message of the real detector accepted: its alarm raised its incident, nothing dead-lettered.
        real_alarm = wait_for(lambda: service.services.alerts.active_by_key(f"{REAL}:smoke_alarm"))
        assert viewer.get("/api/dead-letters", params={"device_id": REAL}).json() == []
        assert registry.get(REAL).last_type == "alarm"
        assert not real_alarm.drill and real_alarm.id != drill.id and real_alarm.event_count == 1

        # Nobody real was reached for the drill: its notices went to drill/…, none to dispatch/…, none to the webhook.
        wait_for(lambda: ear.about(real_alarm.id) and webhook.bodies)
        drill_topics = ear.about(drill.id)
        assert drill_topics and all(t.startswith("drill/v1/wanli/") for t in drill_topics), drill_topics
        assert "drill/v1/wanli/fire_station/DRILL-MFS-XQ/duty" in drill_topics  # the station's drill twin
        assert all(t.startswith("dispatch/v1/") for t in ear.about(real_alarm.id))
        assert {b["incident_id"] for b in webhook.bodies} == {real_alarm.id}
        attempts = service.services.notifier.store.for_incident(drill.id)
        assert attempts and all(a.drill and a.address == DRILL_KEY for a in attempts)
        real_attempts = service.services.notifier.store.for_incident(real_alarm.id)
        assert LEADER_KEY in {a.address for a in real_attempts} and not any(a.drill for a in real_attempts)
        wait_for(lambda: {r["query"]["key"] for r in contract_server.of("wecom")} == {LEADER_KEY, DRILL_KEY})
        for r in contract_server.of("wecom"):  # the leader's group heard only of the real alarm
            assert ("演练" in r["body"]["text"]["content"]) is (r["query"]["key"] == DRILL_KEY), r
        rows = service.services.outbox.for_incident(drill.id)
        assert rows and {r.channel for r in rows} == {"mqtt"}  # no webhook row for a drill
        assert [r.place_id for r in rows if r.dispatch_id] == ["DRILL-MFS-XQ"]

        # Marked everywhere: the API, the KPIs leave it out.
        client = viewer
        listed = {i["id"]: i for i in client.get("/api/incidents").json()}
        assert listed[drill.id]["drill"] is True and listed[real_alarm.id]["drill"] is False
        to_call = op.get(f"/api/incidents/{drill.id}/contacts").json()  # the drawer's list: nobody real to ring
        assert [(c["group"], c["name"]) for c in to_call] == [("演练", "演练群")]
        assert {c["group"] for c in op.get(f"/api/incidents/{real_alarm.id}/contacts").json()} >= {"楼栋", "居民区"}
        kpi = client.get("/api/kpi").json()
        assert kpi["active"] == sum(1 for i in service.services.alerts.active() if not i.drill)
        assert "演练" in client.get("/api/incidents.csv", params={"active": True}).text

        # Nothing real touched; everything the drills registered archived.
        after = {r.device_id: (r.label, r.building_id, r.floor, r.unit, r.lifecycle) for r in registry.list(
            now_ms=now_ms(), building_id="xq-01", lifecycle=None, limit=10_000)}
        assert {k: v for k, v in after.items() if not k.startswith("DRILL-")} == labels
        assert registry.get(NEIGHBOUR).lifecycle.value == "retired"
        twins = [k for k in after if k.startswith("DRILL-")]
        assert len(twins) >= 80 and all(after[k][4].value == "retired" for k in twins)
        assert client.get("/api/drills/devices").json()["count"] == 0
        assert registry.get(REAL).last_seen_ms is not None and sent == 4
    finally:
        ear.close()


def test_a_drill_refuses_what_is_not_its_own(service_factory: ServiceFactory, mosquitto: MosquittoServer,
                                             tmp_path: Path) -> None:
    service = service_factory(mqtt_url=mosquitto.url)
    register_building(service)
    service.services.registry.retire(NEIGHBOUR, "test", now_ms(), reason="stolen")
    tester = service_factory.client(service, "tester")
    # The drill's door takes only DRILL-… ids: a real id is refused and nothing is written.
    r = tester.post("/api/drills/devices", json={"devices": [
        {"device_id": "DRILL-SD-XQ01-0302", "kind": "smoke_detector", "building_id": "xq-01", "floor": 3,
         "unit": "0302"},
        {"device_id": NEIGHBOUR, "kind": "smoke_detector", "building_id": "xq-01", "floor": 3, "unit": "0302"}]})
    assert r.status_code == 422
    assert service.services.registry.find("DRILL-SD-XQ01-0302") is None
    assert service.services.registry.get(NEIGHBOUR).lifecycle.value == "retired"
    assert tester.post("/api/drills/end", json={"device_ids": [REAL]}).status_code == 422
    # …and the maintainers' doors take no DRILL- id: a real device so named would page nobody real.
    maintainer = service_factory.client(service, "maintainer")
    refused = maintainer.post("/api/devices", json={"device_id": "DRILL-SD-XQ01-0303", "kind": "smoke_detector",
                                                    "building_id": "xq-01", "floor": 3, "unit": "0303"})
    assert refused.status_code == 422 and "reserved" in refused.text
    report = maintainer.post("/api/devices/import", headers={"content-type": "text/csv"},
                             content="device_id,kind,building_id,floor,unit,label\n"
                                     "DRILL-SD-XQ01-0304,smoke_detector,xq-01,3,0304,x\n".encode())
    assert report.status_code == 200 and report.json()["created"] == 0 and len(report.json()["rejected"]) == 1
    assert service.services.registry.get(REAL).lifecycle.value == "active"
    assert service_factory.client(service, "viewer").post("/api/drills/end", json={}).status_code == 403
    assert tester.post("/api/clock/advance", json={"seconds": 60}).status_code == 409  # the wall clock never jumps
    token = new_token(service, "tester")
    api, broker = ["--api", service.http_url], ["--mqtt-url", mosquitto.url]
    # simulate says so when the device is not registered, or retired: nothing published, no traceback.
    done = wanli("simulate", "alarm", "SD-NOPE-0001", *api, *broker, token=token, data_dir=tmp_path)
    assert done.returncode == 1 and "not registered" in done.stderr and "nothing published" in done.stderr
    assert "Traceback" not in done.stderr and "published a drill" not in done.stdout
    done = wanli("simulate", "alarm", NEIGHBOUR, *api, *broker, token=token, data_dir=tmp_path)
    assert done.returncode == 2 and "retired" in done.stderr
    assert service.services.registry.find(f"DRILL-{NEIGHBOUR}") is None
