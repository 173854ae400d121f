"""Escalation through the running service: notices over real MQTT and to a webhook, deadlines that survive a restart.

The service runs on a fake clock the test moves forward, so a one-minute deadline passes
without waiting a minute; MQTT, the database and the webhook are real.
"""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.fixtures.servers import free_port
from tests.fixtures.service import accounts, auth_headers, now_ms, publish, register_building, wait_for
from foundation.mqtt import Subscriber
from wanli.runtime import running_in_thread
from wanli.settings import Settings

pytestmark = pytest.mark.mosquitto


class FakeClock:
    def __init__(self) -> None:
        self.offset_ms = 0

    def __call__(self) -> int:
        return now_ms() + self.offset_ms

    def advance(self, seconds: float) -> None:
        self.offset_ms += int(seconds * 1000)


class Inbox:
    """A subscriber to every dispatch topic, as responders' apps would be."""

    def __init__(self, broker) -> None:
        self.messages: list[tuple[str, dict]] = []
        self._subscriber = Subscriber(broker.host, broker.port, "dispatch/#",
                                      lambda m: self.messages.append((m.topic, json.loads(m.payload))),
                                      client_id=f"inbox-{uuid.uuid4().hex[:6]}")
        assert self._subscriber.wait(10)

    def topics(self) -> set[str]:
        return {t for t, _ in self.messages}

    def close(self) -> None:
        self._subscriber.close()


@pytest.fixture
def webhook():
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server name
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/notify", received
    finally:
        server.shutdown()
        server.server_close()


def test_an_alarm_is_dispatched_escalates_when_nobody_answers_even_across_a_restart(tmp_path, mosquitto, webhook):
    url, posted = webhook
    clock = FakeClock()
    settings = Settings(data_dir=tmp_path / "data", mqtt_url=mosquitto.url, mqtt_client_id=f"w-{uuid.uuid4().hex[:6]}",
                        http_port=free_port(), simulate_building=False, webhook_url=url, alert_tick_s=0.1)
    inbox = Inbox(mosquitto)
    try:
        with running_in_thread(settings, clock) as service:
            detector = register_building(service).smoke_detectors()[8]  # 3层 0301
            publish(mosquitto.host, mosquitto.port, [detector.alarm(now_ms())])
            station = "dispatch/v1/wanli/fire_station/MFS-XQ/duty"
            leader = "dispatch/v1/wanli/building/xq-01/building_leader"
            wait_for(lambda: {station, leader} <= inbox.topics())
            (incident,) = httpx.get(f"{service.http_url}/api/incidents", headers=auth_headers(service)).json()
            assert (incident["escalation_policy"], incident["tier"]) == ("fire", "community")
            assert incident["next_escalation_at"] is not None
            body = dict(inbox.messages)[station]
            assert body["incident_id"] == incident["id"] and body["dispatch_id"] == f"{incident['id']}-0"
            assert body["location"] == "香泉居民区 香泉 1号楼 3层 0301室"
            wait_for(lambda: len(posted) >= 3)  # the city platform got every notice too
            assert {p["role"] for p in posted} >= {"building_leader", "property", "fire_station_duty"}

            clock.advance(61)  # nobody acknowledged within a minute
            community = "dispatch/v1/wanli/community/xiangquan/residents_committee"
            wait_for(lambda: community in inbox.topics())

        clock.advance(600)  # the service was down for ten minutes: the next deadline passed meanwhile
        with running_in_thread(settings, clock) as service:
            area = "dispatch/v1/wanli/area/yihua/grid_patroller"
            wait_for(lambda: area in inbox.topics(), 10)  # late ones fire at once
            detail = httpx.get(f"{service.http_url}/api/incidents/{incident['id']}", headers=auth_headers(service)).json()
            actions = [a["action"] for a in detail["audit"]]
            assert actions == ["open", "notify", "escalate", "escalate"]
            resp = httpx.post(f"{service.http_url}/api/incidents/{incident['id']}/actions",
                              json={"action": "acknowledge", "actor": "网格员 张伟"}, headers=auth_headers(service))
            assert resp.status_code == 200
            def about_it():
                return [m for _t, m in inbox.messages if m["incident_id"] == incident["id"]]

            seen = len(about_it())
            clock.advance(3600)  # (other devices' silence may page people meanwhile: not this incident's business)
            time.sleep(0.5)  # several ticks: an acknowledged incident climbs no further
            assert len(about_it()) == seen
    finally:
        inbox.close()


def test_a_micro_fire_station_answers_over_mqtt_and_the_incident_follows(service_factory, mosquitto):
    service = service_factory(mqtt_url=mosquitto.url)
    detector = register_building(service).smoke_detectors()[0]
    api = service.http_url + "/api"
    assert httpx.post(f"{api}/devices", json={"device_id": "MFS-XQ", "kind": "fire_station", "building_id": "xq-01"},
                      headers=auth_headers(service)).status_code == 201
    publish(mosquitto.host, mosquitto.port, [detector.alarm(now_ms())])
    (incident,) = wait_for(lambda: [i for i in httpx.get(f"{api}/incidents", headers=auth_headers(service)).json() if i["condition"] == "smoke_alarm"])
    dispatch_id = f"{incident['id']}-0"
    station = "safety/v1/wanli/fire_station/MFS-XQ/event"
    seq = now_ms()

    def step(n, kind):
        return station, json.dumps({"v": 1, "ts": now_ms(), "seq": seq + n, "type": kind, "dispatch_id": dispatch_id}).encode()

    publish(mosquitto.host, mosquitto.port, [step(1, "dispatch_ack"), step(2, "dispatch_depart"),
                                             step(3, "dispatch_on_scene"), step(4, "dispatch_finished")])
    detail = wait_for(lambda: (d := httpx.get(f"{api}/incidents/{incident['id']}", headers=auth_headers(service)).json())["state"] == "resolved" and d)
    trail = [(a["action"], a["actor"]) for a in detail["audit"]][2:]
    assert trail == [(a, "微型消防站 MFS-XQ") for a in ("acknowledge", "dispatch", "arrive", "resolve")]
    assert detail["acknowledged_by"] == "微型消防站 MFS-XQ"
    kpi = httpx.get(f"{api}/kpi", headers=auth_headers(service)).json()
    assert kpi["dispatches"] == 1 and kpi["acknowledged_within_1_min"] == 1 and kpi["arrived_within_3_min"] == 1
    (row,) = kpi["recent_dispatches"]
    assert row["dispatch_id"] == dispatch_id and row["ack_s"] is not None and row["ack_s"] < 60
    # A person still verifies before closure (核查 → 结案).
    assert httpx.post(f"{api}/incidents/{incident['id']}/actions", json={"action": "verify", "actor": "值班长"}, headers=auth_headers(service)).status_code == 200


def test_a_station_answering_through_the_api_counts_for_the_1_and_3_minute_rule(tmp_path, mosquitto):
    """A station's app (a responder token) acknowledges and reports arrival through the API: the incident
    moves, the KPI's station figures count the answers as if they came over MQTT, and no breach is raised."""
    clock = FakeClock()
    settings = Settings(data_dir=tmp_path / "data", mqtt_url=mosquitto.url, mqtt_client_id=f"w-{uuid.uuid4().hex[:6]}",
                        http_port=free_port(), simulate_building=False, alert_tick_s=0.1)
    with running_in_thread(settings, clock) as service:
        detector = register_building(service).smoke_detectors()[0]
        api = f"{service.http_url}/api"
        publish(mosquitto.host, mosquitto.port, [detector.alarm(now_ms())])
        (incident,) = wait_for(lambda: httpx.get(f"{api}/incidents", headers=auth_headers(service)).json())
        wait_for(lambda: httpx.get(f"{api}/kpi", headers=auth_headers(service)).json()["dispatches"] == 1)
        _token, raw = accounts(service).create_token("responder-app MFS-XQ", ["responder"], "test", now_ms(),
                                                     stations=["MFS-XQ"])  # a station's app is bound to it
        app = {"Authorization": f"Bearer {raw}"}
        actions = f"{api}/incidents/{incident['id']}/actions"

        clock.advance(20)
        acked = httpx.post(actions, json={"action": "acknowledge", "station_id": "MFS-XQ", "actor": "队长 张伟"},
                           headers=app)
        assert acked.status_code == 200 and acked.json()["state"] == "acknowledged"
        clock.advance(100)
        arrived = httpx.post(actions, json={"action": "arrive", "station_id": "MFS-XQ",
                                            "dispatch_id": f"{incident['id']}-0"}, headers=app)
        assert arrived.status_code == 200  # acknowledged, never dispatched: the arrival is kept as a note

        kpi = httpx.get(f"{api}/kpi", headers=auth_headers(service)).json()
        assert (kpi["dispatches"], kpi["acknowledged"], kpi["acknowledged_within_1_min"]) == (1, 1, 1)
        assert (kpi["arrived"], kpi["arrived_within_3_min"]) == (1, 1)
        (row,) = kpi["recent_dispatches"]
        assert row["station"] == "MFS-XQ" and 20 <= row["ack_s"] < 30 and 120 <= row["arrive_s"] < 130

        clock.advance(300)  # past both deadlines: answered in time, so no breach
        time.sleep(0.5)  # several ticks
        conditions = [i["condition"] for i in httpx.get(f"{api}/incidents", headers=auth_headers(service)).json()]
        assert not [c for c in conditions if c.startswith("dispatch_")], conditions
        trail = httpx.get(f"{api}/incidents/{incident['id']}", headers=auth_headers(service)).json()["audit"]
        station = [(a["action"], a["note"]) for a in trail if a["actor"].startswith("微型消防站 MFS-XQ")]
        assert station == [("acknowledge", "确认出动"), ("note", "到达现场（状态为 acknowledged）")]
