"""Faults of the service itself become incidents on the wall and /readyz tells (issue 13), against real Mosquitto.

The faults the chaos table covers (tooling/chaos_alarm_path.py, tests/reliability/test_alarm_path_faults.py)
plus two more: notices that cannot leave (the city platform's webhook refusing) and an MQTT
receiver process that keeps dying.
"""

import os
import signal

import pytest

from tests.fixtures.servers import free_port
from tests.fixtures.service import now_ms, publish, register_building, wait_for

pytestmark = [pytest.mark.mosquitto]


def system_incident(client, condition, active=True):
    for inc in client.get("/api/incidents", params={"active": "true" if active else "false", "limit": 1000}).json():
        if inc["category"] == "system" and inc["condition"] == condition:
            return inc
    return None


def test_notices_that_cannot_leave_are_a_critical_system_incident_and_readyz_503(service_factory, mosquitto):
    dead_webhook = f"http://127.0.0.1:{free_port()}/platform"  # nothing listens: every POST fails
    service = service_factory(mqtt_url=mosquitto.url, webhook_url=dead_webhook, fault_notices_stuck_s=1,
                              alert_tick_s=0.2)
    client = service_factory.client(service, "operator")
    building = register_building(service)
    publish(mosquitto.host, mosquitto.port, [building.smoke_detectors()[0].alarm(now_ms())])
    fault = wait_for(lambda: system_incident(client, "notices_stuck_webhook"), timeout_s=30)
    assert fault["severity"] == "critical" and fault["kind"] == "system"
    assert fault["escalation_policy"] == "system-critical"  # to the ops centre's technical duty
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert [f["condition"] for f in ready.json()["impaired"]] == ["notices_stuck_webhook"]
    assert "notices_stuck_webhook" in client.get("/metrics").text


def test_a_receiver_that_keeps_dying_is_a_system_incident_and_alarms_still_open_incidents(service_factory, mosquitto):
    service = service_factory(mqtt_url=mosquitto.url, fault_receiver_restarts=2, alert_tick_s=0.2)
    client = service_factory.client(service, "operator")
    building = register_building(service)
    consumer = service.consumer
    for _ in range(2):
        pid = consumer.receiver_pids["main"]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda p=pid: consumer.receiver_pids["main"] not in (None, p) and consumer.subscribed.is_set(),
                 timeout_s=30)
    fault = wait_for(lambda: system_incident(client, "receiver_restarting"), timeout_s=30)
    assert "restarted 2 times" in fault["detail"]
    assert client.get("/readyz").status_code == 503
    detector = building.smoke_detectors()[1]
    publish(mosquitto.host, mosquitto.port, [detector.alarm(now_ms())])
    wait_for(lambda: any(i["device_id"] == detector.device_id and i["condition"] == "smoke_alarm"
                         for i in client.get("/api/incidents", params={"active": "true"}).json()), timeout_s=15)


def test_a_system_incident_closes_itself_with_the_audit_saying_so(service_factory, mosquitto):
    service = service_factory(mqtt_url=mosquitto.url, alert_tick_s=0.2)
    client = service_factory.client(service, "operator")
    guard = service.services.disk_guard
    reserve, guard.reserve_bytes = guard.reserve_bytes, 10**18  # the disk "inside the reserve"
    try:
        fault = wait_for(lambda: system_incident(client, "disk_reserve"), timeout_s=15)
        assert client.get("/readyz").status_code == 503
    finally:
        guard.reserve_bytes = reserve
    wait_for(lambda: system_incident(client, "disk_reserve") is None, timeout_s=15)
    detail = client.get(f"/api/incidents/{fault['id']}").json()
    assert detail["state"] == "closed"
    assert detail["audit"][-1]["action"] == "auto_close" and detail["audit"][-1]["actor"] == "system"
    assert client.get("/readyz").status_code == 200
