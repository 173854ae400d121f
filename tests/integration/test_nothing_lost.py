"""'100-1=0': what devices publish is stored and evaluated exactly once, through restarts and outages.

Against real Mosquitto (persistent sessions, QoS 1) and real InfluxDB 1.x.
"""

import uuid

import httpx
import pytest

from tests.fixtures.servers import free_port
from tests.fixtures.service import auth_headers, now_ms, publish, register_building, wait_for
from wanli.runtime import running_in_thread
from wanli.settings import Settings

pytestmark = [pytest.mark.mosquitto, pytest.mark.influxdb]


def influx_count(influx, database: str, measurement: str = "smoke_detector") -> int:
    result = influx.query(f"SELECT count(seq) FROM {measurement}", database)["results"][0]
    return result["series"][0]["values"][0][1] if result.get("series") else 0


def stats(service) -> dict:
    return httpx.get(f"{service.http_url}/api/stats").json()


def incidents(service) -> list[dict]:
    """The device incidents the alarms opened (several at once in a building also open a suspected fire)."""
    return [i for i in httpx.get(f"{service.http_url}/api/incidents", headers=auth_headers(service)).json() if i["condition"] == "smoke_alarm"]


@pytest.fixture(params=["paho", "bulk"])
def settings(request, tmp_path, mosquitto, influxdb_v1) -> Settings:
    """One service's settings; starting it twice resumes the same data and the same MQTT session. With each of the
    main lane's receivers (WANLI_INGEST_RECEIVER: ingest/receiver.py, ingest/bulk_receiver.py)."""
    return Settings(data_dir=tmp_path / "data", mqtt_url=mosquitto.url, telemetry_backend="influxdb1",
                    influx_url=influxdb_v1.url, influx_database=f"lost_{uuid.uuid4().hex[:8]}",
                    mqtt_client_id=f"wanli-{uuid.uuid4().hex[:8]}", http_port=free_port(), simulate_building=False,
                    ingest_receiver=request.param)


def street_traffic(sim, rounds: int, alarm_every: int = 7) -> list[tuple[str, bytes]]:
    """Heartbeats from every smoke detector of the building, with an alarm now and then."""
    out, t = [], now_ms() - 100_000
    for r in range(rounds):
        for i, d in enumerate(sim.smoke_detectors()):
            t += 1
            out.append(d.alarm(t) if (r * 72 + i) % alarm_every == 0 else d.heartbeat(t))
    return out


def test_what_devices_publish_while_ingest_is_down_arrives_when_it_is_back(settings, mosquitto, influxdb_v1):
    with running_in_thread(settings) as service:
        sim = register_building(service)  # also creates ingest's persistent session at the broker
    traffic = street_traffic(sim, rounds=6)
    alarms = {t for t, p in traffic if b'"alarm"' in p}
    publish(mosquitto.host, mosquitto.port, traffic)  # nobody is consuming: the broker keeps it all

    with running_in_thread(settings) as service:
        s = wait_for(lambda: (s := stats(service))["readings"] >= len(traffic) and not s["spool_points"] and s, 30)
        assert s["readings"] == len(traffic) and s["duplicates"] == 0 and not s["rejected"]
        assert len(incidents(service)) == len(alarms)
    assert influx_count(influxdb_v1, settings.influx_database) == len(traffic)


def test_influxdb_down_delays_the_time_series_never_the_alarms_and_loses_nothing(settings, mosquitto, influxdb_v1):
    with running_in_thread(settings) as service:
        sim = register_building(service)
        traffic = street_traffic(sim, rounds=4)
        influxdb_v1.stop()
        try:
            publish(mosquitto.host, mosquitto.port, traffic)
            alarms = sum(b'"alarm"' in p for _t, p in traffic)
            wait_for(lambda: len(incidents(service)) == alarms, 15)  # alarms reach the screens meanwhile
            s = wait_for(lambda: (s := stats(service))["readings"] == len(traffic) and s, 15)
            assert s["spool_points"] == len(traffic) and s["store_up"] == 0 and s["store_error"]
        finally:
            influxdb_v1.start()
        wait_for(lambda: stats(service)["spool_points"] == 0, 60)
        assert stats(service)["store_up"] == 1
    assert influx_count(influxdb_v1, settings.influx_database) == len(traffic)


def test_the_same_messages_published_twice_are_stored_and_evaluated_once(settings, mosquitto, influxdb_v1):
    with running_in_thread(settings) as service:
        sim = register_building(service)
        traffic = street_traffic(sim, rounds=2, alarm_every=1)[:100]  # every one an alarm
        publish(mosquitto.host, mosquitto.port, traffic)
        wait_for(lambda: stats(service)["readings"] == len(traffic), 15)
        publish(mosquitto.host, mosquitto.port, traffic)  # a device re-sending, or a redelivery
        s = wait_for(lambda: (s := stats(service))["duplicates"] == len(traffic) and not s["spool_points"] and s, 15)
        assert s["readings"] == len(traffic)
        found = incidents(service)
        assert len(found) == 72 and sum(i["event_count"] for i in found) == len(traffic)
    assert influx_count(influxdb_v1, settings.influx_database) == len(traffic)
