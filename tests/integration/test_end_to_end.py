"""A smoke alarm travels over MQTT, is stored as a time series and raises an incident seen through the API.

Once on the embedded broker (what ``wanli run`` uses), once on real Mosquitto into real InfluxDB 1.x.
"""

import json
import uuid

import httpx
import pytest

from devices.topics import MessageClass, device_topic
from tests.fixtures.service import auth_headers, now_ms, publish, register_building, wait_for


def incidents(service, **params):
    return httpx.get(f"{service.http_url}/api/incidents", params=params, timeout=5, headers=auth_headers(service)).json()


def test_alarm_over_the_embedded_broker_raises_one_incident_and_bad_input_is_kept(service_factory):
    service = service_factory()
    detector = register_building(service).smoke_detectors()[5]
    broker = service.broker
    assert broker is not None

    publish(broker.host, broker.port, [detector.alarm(now_ms())])
    (incident,) = wait_for(lambda: incidents(service, active=True))
    assert incident["device_id"] == detector.device_id and incident["state"] == "open" and incident["severity"] == "high"
    assert incident["location"]["label"] == "香泉居民区 香泉 1号楼 2层 0202室"
    assert incident["location"]["area"] == "颐华片区"

    publish(broker.host, broker.port, [detector.alarm(now_ms())])
    wait_for(lambda: incidents(service, active=True)[0]["event_count"] == 2)
    assert len(incidents(service)) == 1

    garbage = device_topic("wanli", "smoke_detector", detector.device_id, MessageClass.EVENT)
    publish(broker.host, broker.port, [(garbage, b"\x00\x01 not json"), ("safety/v1/wanli/oops", b"{}")])
    letters = wait_for(lambda: httpx.get(f"{service.http_url}/api/dead-letters", headers=auth_headers(service)).json() if
                       len(httpx.get(f"{service.http_url}/api/dead-letters", headers=auth_headers(service)).json()) == 2 else None)
    assert {d["reason"] for d in letters} == {"bad_json", "bad_topic"}
    assert httpx.get(f"{service.http_url}/api/dead-letters/counts", headers=auth_headers(service)).json() == {"bad_json": 1, "bad_topic": 1}

    devices = httpx.get(f"{service.http_url}/api/devices", params={"kind": "smoke_detector"}, headers=auth_headers(service)).json()
    assert len(devices) == 18 * 4
    seen = httpx.get(f"{service.http_url}/api/devices/{detector.device_id}", headers=auth_headers(service)).json()
    assert seen["last_type"] == "alarm" and seen["location"]["floor"] == 2


def test_operator_actions_follow_the_lifecycle_and_illegal_ones_are_refused(service_factory):
    service = service_factory()
    detector = register_building(service).smoke_detectors()[0]
    publish(service.broker.host, service.broker.port, [detector.alarm(now_ms())])
    (incident,) = wait_for(lambda: incidents(service, active=True))
    url = f"{service.http_url}/api/incidents/{incident['id']}"

    refused = httpx.post(f"{url}/actions", json={"action": "verify", "actor": "王"}, headers=auth_headers(service))
    assert refused.status_code == 409 and "cannot verify when open" in refused.json()["detail"]
    assert httpx.post(f"{url}/actions", json={"action": "launch", "actor": "王"}, headers=auth_headers(service)).status_code == 422
    assert httpx.post(f"{service.http_url}/api/incidents/inc_nope/actions",
                      json={"action": "acknowledge", "actor": "王"}, headers=auth_headers(service)).status_code == 404

    for action in ("acknowledge", "dispatch", "arrive", "resolve", "verify"):
        resp = httpx.post(f"{url}/actions", json={"action": action, "note": action}, headers=auth_headers(service, "operator"))
        assert resp.status_code == 200, resp.text
    detail = httpx.get(url, headers=auth_headers(service)).json()
    assert detail["state"] == "closed" and detail["closed_at"] is not None
    assert [a["action"] for a in detail["audit"]] == ["open", "notify", "acknowledge", "dispatch", "arrive", "resolve",
                                                      "verify"]
    assert {a["actor"] for a in detail["audit"][2:]} == {"token:test-operator"}  # the caller's account, always
    assert incidents(service, active=True) == []


@pytest.mark.mosquitto
@pytest.mark.influxdb
def test_alarm_over_real_mosquitto_is_stored_in_real_influxdb_1x(service_factory, mosquitto, influxdb_v1):
    database = f"wanli_{uuid.uuid4().hex[:8]}"
    service = service_factory(mqtt_url=mosquitto.url, telemetry_backend="influxdb1", influx_url=influxdb_v1.url,
                              influx_database=database)
    sim = register_building(service)
    detector = sim.smoke_detectors()[10]
    t = now_ms()
    publish(mosquitto.host, mosquitto.port, [detector.heartbeat(t - 1000), detector.alarm(t)])

    (incident,) = wait_for(lambda: incidents(service, active=True))
    assert incident["device_id"] == detector.device_id

    def stored():
        result = influxdb_v1.query(f"SELECT * FROM smoke_detector WHERE device = '{detector.device_id}'", database)
        series = result["results"][0].get("series", [])
        return [dict(zip(series[0]["columns"], v, strict=True)) for v in series[0]["values"]] if series else None

    rows = wait_for(stored)
    assert [r["type"] for r in rows] == ["heartbeat", "alarm"]
    alarm = rows[1]
    assert alarm["smoke_density"] == 0.25 and alarm["class"] == "event" and alarm["street"] == "wanli"
    assert alarm["seq"] == detector.seq

    # The read side the screen uses gives the same points back, newest first.
    points = service.services.telemetry.recent(detector.device_id)
    assert [p.type for p in points] == ["alarm", "heartbeat"]


@pytest.mark.victoriametrics
def test_influxdb_client_write_path_against_real_victoria_metrics(victoria_metrics):
    from devices.kinds.charging_station import contract as charging_station
    from devices.reading import Reading
    from ingest.points import points_of
    from ingest.telemetry import InfluxV2TelemetryStore

    store = InfluxV2TelemetryStore(victoria_metrics.url, org="wanli", bucket="wanli", token="unused-by-vm")
    t = now_ms()
    msg = charging_station.StationStatus(v=1, ts=t, seq=9, ambient_temp_c=23.5, ports=[
        charging_station.Port(port=1, state="charging", temperature_c=41.0, power_w=180.0),
        charging_station.Port(port=2, state="idle", temperature_c=22.0),
    ])
    written = store.write_points(points_of(Reading("wanli", "charging_station", "CS-VM-1", MessageClass.TELEMETRY, msg, t)))
    store.close()
    assert written == 3

    series = victoria_metrics.wait_for_series('{__name__="charging_station_temperature_c",device="CS-VM-1"}', count=2)
    by_port = {s["metric"]["port"]: s for s in series}
    assert by_port["1"]["values"] == [41.0] and by_port["2"]["values"] == [22.0]
    assert by_port["1"]["timestamps"] == [t]
    assert by_port["1"]["metric"]["street"] == "wanli" and by_port["1"]["metric"]["type"] == "station_status"
    ambient = victoria_metrics.wait_for_series('{__name__="charging_station_ambient_temp_c",device="CS-VM-1"}')
    assert ambient[0]["values"] == [23.5]


def test_api_rejects_bad_requests_with_4xx_and_a_message(service_factory):
    service = service_factory()
    base = service.http_url
    assert httpx.get(f"{base}/api/incidents/inc_missing", headers=auth_headers(service)).status_code == 404
    assert httpx.get(f"{base}/api/devices/NOPE", headers=auth_headers(service)).status_code == 404
    assert httpx.get(f"{base}/api/incidents", params={"limit": 0}, headers=auth_headers(service)).status_code == 422
    bad = httpx.post(f"{base}/api/incidents/x/actions", content=b"{",
                     headers={"content-type": "application/json", **auth_headers(service)})
    assert bad.status_code == 422 and "detail" in bad.json()
    assert json.loads(httpx.get(f"{base}/healthz").text) == {"status": "ok"}
    # Ready once ingest has subscribed, which a started service may still be doing on a busy machine.
    wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200)


def test_metrics_and_stats_count_what_happened(service_factory):
    service = service_factory()
    sim = register_building(service)
    detector = sim.smoke_detectors()[3]
    alarm = detector.alarm(now_ms())
    publish(service.broker.host, service.broker.port, [detector.heartbeat(now_ms()), alarm, alarm,
                                                       ("safety/v1/wanli/smoke_detector/X/event", b"{")])
    stats = wait_for(lambda: (s := httpx.get(f"{service.http_url}/api/stats").json())["received"] == 4
                     and s["drained_points"] == 2 and s)
    assert stats["readings"] == 2 and stats["duplicates"] == 1 and stats["rejected"] == {"bad_json": 1}
    assert stats["spool_points"] == 0 and stats["store_up"] == 1
    assert 0 <= stats["latency"]["publish_to_committed"]["p50"] < 10_000
    assert 0 <= stats["latency"]["publish_to_stored"]["p99"] < 10_000
    text = httpx.get(f"{service.http_url}/metrics").text
    assert 'wanli_messages_total{kind="smoke_detector"} 2.0' in text
    assert 'wanli_messages_rejected_total{reason="bad_json"} 1.0' in text
    assert "wanli_messages_duplicate_total 1.0" in text
    assert 'wanli_latency_ms{quantile="p99",stage="publish_to_stored"}' in text
    assert "wanli_spool_points 0.0" in text
