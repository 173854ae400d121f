"""Size limits (payloads, uploads, query ranges) answered with a 4xx, and no secret in the service's logs.

The broker-side ACL (a device publishing under another device's topic) is shown in
tests/integration/test_broker_acl.py::test_device_cannot_publish_outside_its_own_topics.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.fixtures.servers import free_port
from tests.fixtures.service import new_token, now_ms, publish, register_building, wait_for

pytestmark = pytest.mark.mosquitto

BROKER_MAX_PACKET = 1_052_672  # config/mosquitto/test.conf max_packet_size


@pytest.mark.parametrize(("path", "params"), [
    ("/api/incidents", {"limit": 10**9}),
    ("/api/devices", {"limit": 10**9}),
    ("/api/dead-letters", {"limit": 10**9}),
    ("/api/quarantine", {"limit": 10**9}),
    ("/api/stats", {"last": 10**9}),
])
def test_query_ranges_past_their_bound_get_a_422(service_factory, path, params):
    service = service_factory()
    resp = httpx.get(f"{service.http_url}{path}", params=params,
                     headers={"Authorization": f"Bearer {new_token(service)}"}, timeout=10)
    assert resp.status_code == 422 and "less than or equal" in resp.text


def test_an_upload_over_the_limit_gets_a_413_and_registers_nothing(service_factory):
    service = service_factory()
    body = b"device_id,kind,building_id\nSD-BIG-1,smoke_detector,xq-01\n" + b"#" * (33 * 1024 * 1024)
    headers = {"Authorization": f"Bearer {new_token(service)}"}
    resp = httpx.post(f"{service.http_url}/api/devices/import", content=body, headers=headers, timeout=60)
    assert resp.status_code == 413 and "32 MiB" in resp.json()["detail"]

    def chunks():  # no declared length: refused while it streams, before the whole body is read
        yield body[:1024]
        for start in range(1024, len(body), 1024 * 1024):
            yield body[start:start + 1024 * 1024]

    resp = httpx.post(f"{service.http_url}/api/devices/import", content=chunks(), headers=headers, timeout=60)
    assert resp.status_code == 413 and "32 MiB" in resp.json()["detail"]
    assert service.services.registry.find("SD-BIG-1") is None


def test_a_payload_over_the_ingest_limit_is_dead_lettered_as_oversized(service_factory, mosquitto):
    service = service_factory(mqtt_url=mosquitto.url)
    detector = register_building(service).smoke_detectors()[0]
    topic, _ = detector.alarm(now_ms())
    publish(mosquitto.host, mosquitto.port, [(topic, b"{" + b" " * 20_000 + b"}")])
    wait_for(lambda: service.services.dead_letters.counts().get("oversized") == 1)


def test_the_broker_drops_a_client_publishing_past_its_packet_limit(mosquitto):
    """What never reaches ingest: a packet over max_packet_size costs the sender its connection."""
    dropped = []
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"huge-{uuid.uuid4().hex[:6]}")
    client.on_disconnect = lambda *args: dropped.append(args[3])
    client.connect(mosquitto.host, mosquitto.port)
    client.loop_start()
    try:
        client.publish("safety/v1/wanli/smoke_detector/SD-HUGE/event", b"x" * (BROKER_MAX_PACKET + 1), qos=1)
        wait_for(lambda: dropped, timeout_s=10)
    finally:
        client.loop_stop()


SECRETS = {
    "WANLI_MQTT_PASSWORD": f"mqtt-pw-{uuid.uuid4().hex}",
    "WANLI_INFLUX_PASSWORD": f"influx-pw-{uuid.uuid4().hex}",
    "WANLI_INFLUX_TOKEN": f"influx-token-{uuid.uuid4().hex}",
}


@pytest.mark.slow
def test_no_secret_appears_in_the_service_logs(tmp_path, mosquitto):
    """``wanli run -v`` with passwords and tokens configured, through its stores failing and bad input; then the log.

    InfluxDB is pointed at a closed port, so every write fails and is logged; garbage is published.
    """
    port, dead_influx = free_port(), free_port()
    env = {**os.environ, **SECRETS, "WANLI_MQTT_USERNAME": "wanli-ingest",
           "WANLI_MQTT_CLIENT_ID": f"wanli-secrets-{uuid.uuid4().hex[:6]}",
           "WANLI_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/notify"}
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "wanli.cli", "-v", "run", "--no-simulate", "--mqtt-url", mosquitto.url,
             "--data-dir", str(tmp_path / "data"), "--port", str(port), "--telemetry", "influxdb1",
             "--influx-url", f"http://127.0.0.1:{dead_influx}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_for(lambda: _ready(port), timeout_s=60, interval_s=0.2)
        except AssertionError as exc:  # why it never became ready is in its log
            raise AssertionError(f"{exc}\n{log_path.read_text(errors='replace')[-4000:]}") from None
        detector_topic = "safety/v1/wanli/smoke_detector/SD-XQ01-0101/event"
        publish(mosquitto.host, mosquitto.port,
                [(detector_topic, b"{not json"), (detector_topic, b'{"v":1,"ts":%d,"seq":1,"type":"alarm"}' % now_ms())])
        time.sleep(3)  # a few failed writes to the missing InfluxDB, and the rejections, are logged
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)
    text = log_path.read_text(errors="replace")
    assert "rejected message" in text or "DEBUG" in text  # the log is not empty: there was something to leak
    leaked = [name for name, value in SECRETS.items() if value in text]
    assert leaked == [], f"{leaked} appear in the log"


def test_a_bad_configuration_does_not_print_the_secrets(tmp_path):
    # pydantic shortens input_value to its first and last items: a short password set last is shown whole.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WANLI_")}, "WANLI_MQTT_URL": "http://x",
           "WANLI_MQTT_PASSWORD": "s3cret-pw"}
    done = subprocess.run([sys.executable, "-m", "wanli.cli", "run", "--no-simulate"], env=env, cwd=tmp_path,
                          capture_output=True, timeout=60, check=False)
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode != 0 and "WANLI_MQTT_URL" in output
    assert "s3cret-pw" not in output


def _ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            pass
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except (OSError, httpx.HTTPError):
        return False
