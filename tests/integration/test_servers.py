"""The test harness itself: the real servers start, serve, persist and restart as promised.

These pin down the broker and database settings the application depends on (QoS 1
delivery, persistent sessions surviving a restart, a queue far above Mosquitto's default
of 1000) so a config change that would lose alarms fails here first.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.servers import (
    InfluxQueryError,
    InfluxV1Server,
    MosquittoServer,
    ServerStartError,
    VictoriaMetricsServer,
    choose_port,
    find_binary,
    render_mosquitto_conf,
)
from tests.support.mqtt import TestClient, connected


def unique(prefix: str) -> str:
    """A name no other test in the session uses (the servers are shared)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def forget_session(server: MosquittoServer, client_id: str) -> None:
    """Discard a persistent session so it holds no queue for the rest of the run."""
    with connected(server, client_id, clean_session=True):
        pass


# --- the harness's pure parts ------------------------------------------------------


def test_mosquitto_conf_is_rendered_with_this_runs_port_and_persistence_dir(tmp_path) -> None:
    template = "listener 18830 127.0.0.1\nallow_anonymous true\npersistence_location ./data/\n"

    conf = render_mosquitto_conf(template, host="127.0.0.1", port=21883, persistence_dir=tmp_path)

    assert conf == f"listener 21883 127.0.0.1\nallow_anonymous true\npersistence_location {tmp_path}/\n"


def test_mosquitto_conf_template_must_name_listener_once(tmp_path) -> None:
    with pytest.raises(ValueError, match="listener"):
        render_mosquitto_conf("allow_anonymous true\npersistence_location x/\n", host="h", port=1, persistence_dir=tmp_path)


def test_a_taken_port_is_replaced_by_a_free_one() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]

        assert choose_port(taken) != taken


def test_a_missing_binary_fails_naming_its_debian_package() -> None:
    with pytest.raises(pytest.fail.Exception, match="Debian package 'wanli-nothing'.*scripts/test"):
        find_binary("wanli-no-such-server", "wanli-nothing")


# --- Mosquitto ---------------------------------------------------------------------


@pytest.mark.mosquitto
def test_mosquitto_delivers_qos1_round_trip(mosquitto: MosquittoServer) -> None:
    topic = f"wanli-test/{unique('roundtrip')}/smoke/alarm"
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"

    with connected(mosquitto, unique("sub")) as subscriber, connected(mosquitto, unique("pub")) as publisher:
        subscriber.subscribe(topic)
        publisher.publish_all(topic, [b'{"event":"smoke_alarm"}'])
        [message] = subscriber.wait_for_messages(1)

    assert (message.topic, message.payload, message.qos) == (topic, b'{"event":"smoke_alarm"}', 1)


@pytest.mark.mosquitto
def test_persistent_session_survives_broker_restart(mosquitto: MosquittoServer) -> None:
    """A QoS 1 alarm queued for an offline subscriber is still delivered after a restart."""
    topic = f"wanli-test/{unique('restart')}/alarm"
    subscriber_id = unique("persistent-sub")
    with connected(mosquitto, subscriber_id, clean_session=False) as subscriber:
        subscriber.subscribe(topic)
    with connected(mosquitto, unique("pub")) as publisher:
        publisher.publish_all(topic, [b"queued-while-offline"])
    port, pid_before = mosquitto.port, mosquitto.pid

    mosquitto.restart()

    assert (mosquitto.port, mosquitto.running) == (port, True)
    assert mosquitto.pid != pid_before
    subscriber = TestClient(mosquitto, subscriber_id, clean_session=False)
    try:
        assert not subscriber.connect().is_failure
        assert subscriber.session_present, "broker forgot the persistent session"
        [message] = subscriber.wait_for_messages(1)
    finally:
        subscriber.close()
        forget_session(mosquitto, subscriber_id)
    assert message.payload == b"queued-while-offline"


@pytest.mark.mosquitto
def test_queue_holds_far_more_than_mosquittos_default_1000(mosquitto: MosquittoServer) -> None:
    count = 5_000
    topic = f"wanli-test/{unique('burst')}/heartbeat"
    subscriber_id = unique("offline-sub")
    with connected(mosquitto, subscriber_id, clean_session=False) as subscriber:
        subscriber.subscribe(topic)
    with connected(mosquitto, unique("pub")) as publisher:
        publisher.publish_all(topic, (str(n).encode() for n in range(count)))

    try:
        with connected(mosquitto, subscriber_id, clean_session=False) as subscriber:
            received = subscriber.wait_for_messages(count)
    finally:
        forget_session(mosquitto, subscriber_id)

    assert sorted(int(message.payload) for message in received) == list(range(count))


@pytest.mark.mosquitto
def test_killed_broker_starts_again_on_the_same_port(mosquitto: MosquittoServer) -> None:
    port = mosquitto.port
    try:
        mosquitto.kill()
        assert not mosquitto.running
    finally:
        mosquitto.start()

    assert mosquitto.port == port
    with connected(mosquitto, unique("after-kill")):
        pass


@pytest.mark.mosquitto
def test_start_failure_reports_the_servers_log(mosquitto: MosquittoServer, tmp_path) -> None:
    """A second broker on the same port exits at once; the error says why."""
    clash = MosquittoServer(tmp_path, port=mosquitto.port)

    with pytest.raises(ServerStartError, match="(?s)exited with code.*Address already in use"):
        clash.start()
    assert not clash.running


# --- InfluxDB 1.x ------------------------------------------------------------------


@pytest.fixture
def influx_database(influxdb_v1: InfluxV1Server) -> Iterator[str]:
    name = unique("wanli_test")
    influxdb_v1.create_database(name)
    yield name
    influxdb_v1.drop_database(name)


@pytest.mark.influxdb
def test_influxdb_write_then_query_returns_the_point(influxdb_v1: InfluxV1Server, influx_database: str) -> None:
    influxdb_v1.write(influx_database, "smoke,device=sd-0001,community=香泉 battery=87i,temperature=21.5 1767225600000000000")

    body = influxdb_v1.query('SELECT battery, temperature FROM smoke WHERE device = \'sd-0001\'', influx_database)

    [series] = body["results"][0]["series"]
    assert series["columns"] == ["time", "battery", "temperature"]
    assert series["values"] == [["2026-01-01T00:00:00Z", 87, 21.5]]


@pytest.mark.influxdb
def test_influxdb_keeps_data_across_restart(influxdb_v1: InfluxV1Server, influx_database: str) -> None:
    influxdb_v1.write(influx_database, ["charging,port=p1 current=4.2 1767225600000000000"])

    influxdb_v1.restart()

    body = influxdb_v1.query("SELECT current FROM charging", influx_database)
    assert body["results"][0]["series"][0]["values"] == [["2026-01-01T00:00:00Z", 4.2]]


@pytest.mark.influxdb
def test_influxdb_query_error_names_the_statement(influxdb_v1: InfluxV1Server, influx_database: str) -> None:
    with pytest.raises(InfluxQueryError, match="SELEKT"):
        influxdb_v1.query("SELEKT nothing", influx_database)


# --- VictoriaMetrics ---------------------------------------------------------------


@pytest.mark.victoriametrics
def test_victoria_metrics_accepts_influx_v2_writes_and_exports_them(victoria_metrics: VictoriaMetricsServer) -> None:
    """The path influxdb-client uses (/api/v2/write) lands as <measurement>_<field> series."""
    measurement = unique("smoke")
    line = f"{measurement},device=sd-0002,building=b07 battery=64i,temperature=23.5 1767225600000000000"

    with httpx.Client(base_url=victoria_metrics.url, trust_env=False) as client:
        response = client.post(
            "/api/v2/write",
            params={"org": "wanli", "bucket": "wanli", "precision": "ns"},
            headers={"Authorization": "Token unused-by-victoria-metrics"},
            content=line,
        )
    assert response.status_code == 204, response.text

    series = victoria_metrics.wait_for_series(f'{{__name__=~"{measurement}_.*"}}', count=2)

    by_name = {s["metric"]["__name__"]: s for s in series}
    assert set(by_name) == {f"{measurement}_battery", f"{measurement}_temperature"}
    battery = by_name[f"{measurement}_battery"]
    assert battery["metric"]["device"] == "sd-0002"
    assert (battery["values"], battery["timestamps"]) == ([64], [1767225600000])
    assert by_name[f"{measurement}_temperature"]["values"] == [23.5]


@pytest.mark.victoriametrics
def test_victoria_metrics_keeps_data_across_restart(victoria_metrics: VictoriaMetricsServer) -> None:
    measurement = unique("charging")
    with httpx.Client(base_url=victoria_metrics.url, trust_env=False) as client:
        client.post("/write", content=f"{measurement},port=p1 power=812.5 1767225600000000000").raise_for_status()
    victoria_metrics.wait_for_series(f'{{__name__="{measurement}_power"}}')

    victoria_metrics.restart()

    [series] = victoria_metrics.export(f'{{__name__="{measurement}_power"}}')
    assert series["values"] == [812.5]
