"""The whole service restarted on the same data dir, with a real Mosquitto: what the alert rules knew survives.

The service runs on a fake clock the test moves forward (a ten-minute outage takes no ten
minutes); MQTT and the database are real. Before the stop: 15 charging stations report, a
detector alarms and the nearest micro fire station is dispatched. Ten minutes later the
service is back: nobody is paged for the outage, the dispatch's deadlines fire at once, and
a second detector alarming within the (widened) window makes a suspected fire.
"""

import json
import uuid

import pytest

from devices.kinds.charging_station.simulator import ChargingStationSim
from devices.registry import DeviceRecord
from tests.fixtures.servers import free_port
from tests.fixtures.service import publish, register_building, wait_for
from tests.integration.test_escalation_dispatch import FakeClock
from wanli.runtime import running_in_thread
from wanli.settings import Settings

pytestmark = pytest.mark.mosquitto


def conditions(service):
    return sorted(i.condition.split(":")[0] for i in service.services.alerts.active())


def active(service, condition):
    return [i for i in service.services.alerts.active() if i.condition == condition]


def test_a_restart_forgets_no_window_and_no_dispatch_and_pages_nobody_for_the_outage(tmp_path, mosquitto):
    thresholds = tmp_path / "thresholds.json"  # a window wider than the outage, so the fire spans the restart
    thresholds.write_text(json.dumps({"buildings": {"xq-01": {"smoke_detector": {"correlation_window_s": 3600}}}}))
    clock = FakeClock()
    settings = Settings(data_dir=tmp_path / "data", mqtt_url=mosquitto.url, mqtt_client_id=f"w-{uuid.uuid4().hex[:6]}",
                        http_port=free_port(), simulate_building=False, alert_tick_s=0.1, thresholds_file=thresholds)
    stations = [ChargingStationSim(f"CS-T{i:02d}", seq=clock()) for i in range(15)]
    with running_in_thread(settings, clock) as service:
        building = register_building(service)
        service.services.registry.register_many(
            [DeviceRecord(s.device_id, "charging_station", "wanli", "xq-01") for s in stations], actor="test",
            now_ms=clock())
        publish(mosquitto.host, mosquitto.port, [s.status(clock()) for s in stations])
        wait_for(lambda: service.snapshot(latency=False)["readings"] >= 15)
        first, second = building.smoke_detectors()[8], building.smoke_detectors()[12]  # 3层 and 4层
        publish(mosquitto.host, mosquitto.port, [first.alarm(clock())])
        wait_for(lambda: "smoke_alarm" in conditions(service))
        clock.advance(11)  # the ticker's next checkpoint (every ten seconds of the engine's clock)
        saved_at = clock()
        wait_for(lambda: service.services.incidents.rule_states().get("smoke_detector.SuspectedFire", (0,))[0]
                 >= saved_at)
        assert conditions(service) == ["smoke_alarm"]

    clock.advance(600)  # ten minutes down: past the stations' three-minute limit and the station's 1 and 3 minutes
    with running_in_thread(settings, clock) as service:
        # The micro fire station never answered: both breaches fire at once after the restart.
        wait_for(lambda: {"dispatch_ack_late", "dispatch_arrival_late"} <= set(conditions(service)))
        publish(mosquitto.host, mosquitto.port, [second.alarm(clock())])
        (fire,) = wait_for(lambda: active(service, "suspected_fire"))
        assert set(fire.members) == {first.device_id, second.device_id} and fire.severity == "critical"
        clock.advance(60)
        service.services.alerts.tick(clock())
        assert not {"offline", "mass_offline"} & set(conditions(service))  # the outage is not the stations' silence
        clock.advance(3 * 60)  # and now they really have been silent for three minutes since the restart
        (storm,) = wait_for(lambda: active(service, "mass_offline"))
        # ours and the building's own station (registered, never heard from)
        assert storm.scope == "street:wanli" and set(storm.members) == {s.device_id for s in stations} | {"CS-XQ01-01"}
        assert "offline" not in conditions(service)  # one grouped incident, not fifteen pages
