"""The street map, the building risk profile, its telemetry charts, who was told of an incident, and the KPIs,
through the HTTP API of a running service (embedded broker, SQLite), with devices publishing over MQTT."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from devices.kinds.charging_station.simulator import ChargingStationSim
from devices.kinds.elderly_alarm.simulator import ElderlyAlarmSim
from devices.kinds.inspection_report.simulator import InspectionReporterSim
from devices.topics import MessageClass
from simulators.building import BuildingSimulation
from simulators.devices.base import Publication
from tests.fixtures.service import (
    ServiceFactory,
    now_ms,
    publish,
    register_building,
    wait_for,
)
from wanli.runtime import WanliService

REPORTER = "IR-TEST-01"


def send(service: WanliService, *messages: Publication) -> None:
    assert service.broker is not None
    publish(service.broker.host, service.broker.port, list(messages))


def connect_telemetry(service: WanliService) -> None:
    """Hand the API the service's telemetry store, as the runtime does once it passes ``telemetry`` to AppContext."""
    ctx = service._server.config.app.state.ctx  # type: ignore[union-attr]
    if ctx.telemetry is None:
        ctx.telemetry = service.services.telemetry


def station(sim: BuildingSimulation) -> ChargingStationSim:
    return next(p.device for p in sim.placed if isinstance(p.device, ChargingStationSim))


def elderly(sim: BuildingSimulation) -> ElderlyAlarmSim:
    return next(p.device for p in sim.placed if isinstance(p.device, ElderlyAlarmSim))


def on_map(client: httpx.Client, building_id: str) -> dict:
    return next(b for b in client.get("/api/map").json()["buildings"] if b["id"] == building_id)


def active(client: httpx.Client, device_id: str) -> dict:
    def find() -> dict | None:
        return next((i for i in client.get("/api/incidents", params={"active": True}).json()
                     if i["device_id"] == device_id and not i["scope"]), None)
    return wait_for(find)  # type: ignore[no-any-return]


@pytest.fixture
def service(service_factory: ServiceFactory, tmp_path: Path) -> WanliService:
    # The reporter's fire-lane deadline is zero hours: its report is overdue the moment it lands.
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({"devices": {REPORTER: {"deadline_h_fire_lane_blocked": 0.0}}}), "utf-8")
    return service_factory(thresholds_file=thresholds)


@pytest.fixture
def client(service_factory: ServiceFactory, service: WanliService) -> httpx.Client:
    return service_factory.client(service, "viewer")


@pytest.fixture
def operator(service_factory: ServiceFactory, service: WanliService) -> httpx.Client:
    return service_factory.client(service, "operator", "maintainer")  # acts on incidents, registers the reporter


def test_the_map_colours_each_building_by_its_state(service: WanliService, client: httpx.Client) -> None:
    street = client.get("/api/map").json()
    h = service.services.hierarchy
    assert {b["id"]: (b["x"], b["y"], b["derived"]) for b in street["buildings"]} == {
        b.id: (b.x, b.y, False) for b in h.buildings.values()}
    assert {b["state"] for b in street["buildings"]} == {"no_devices"}
    assert {s["id"] for s in street["fire_stations"]} == set(h.fire_stations)

    sim = register_building(service)
    xq01 = on_map(client, "xq-01")
    assert xq01["state"] == "fault"  # registered, never heard from
    assert xq01["devices"] == xq01["faults"] == len(sim.placed)

    send(service, *(p.device.heartbeat(now_ms()) for p in sim.placed if hasattr(p.device, "heartbeat")),
         station(sim).status(now_ms()))
    # The map reads device health from the devices table, which ingest writes every few seconds: write it now.
    wait_for(lambda: service.services.registry.flush_states() >= 0 and on_map(client, "xq-01")["state"] == "normal")

    detector = sim.smoke_detectors()[0]
    send(service, detector.alarm(now_ms()))
    building = wait_for(lambda: (b := on_map(client, "xq-01"))["state"] == "incident" and b)
    assert (building["active"], building["critical"], building["top_incident"]) == (1, 0, "烟感报警")

    send(service, elderly(sim).press(now_ms()))
    building = wait_for(lambda: (b := on_map(client, "xq-01"))["state"] == "critical" and b)
    assert building["critical"] == 1 and building["top_incident"] == "一键通紧急呼叫"
    others = {b["state"] for b in client.get("/api/map").json()["buildings"] if b["id"] != "xq-01"}
    assert others == {"no_devices"}

    send(service, sim.smoke_detectors()[1].publication(MessageClass.EVENT, "tamper", now_ms(), state="removed"),
         elderly(sim).publication(MessageClass.TELEMETRY, "heartbeat", now_ms(), battery_pct=9.0))
    registry = service.services.registry

    def faults_agree() -> bool:  # the map's SQL says what the registry's own health() says
        registry.flush_states()
        counts = registry.count_health(now_ms=now_ms(), building_id="xq-01")
        return on_map(client, "xq-01")["faults"] == 2 == counts["tampered"] + counts["low_battery"]

    wait_for(faults_agree)


def test_the_profile_counts_devices_incidents_overdue_rectifications_and_false_alarms(
    service: WanliService, client: httpx.Client, operator: httpx.Client,
) -> None:
    sim = register_building(service)
    operator.post("/api/devices", json={"device_id": REPORTER, "kind": "inspection_report"}).raise_for_status()
    detectors = sim.smoke_detectors()
    t = now_ms()
    send(service,
         detectors[0].publication(MessageClass.TELEMETRY, "heartbeat", t, battery_pct=12.0, rssi_dbm=-80),
         detectors[1].publication(MessageClass.EVENT, "tamper", t, state="removed"),
         detectors[2].alarm(t), detectors[3].alarm(t + 1))
    for d in detectors[2:4]:
        active(client, d.device_id)
    # One alarm was a kitchen's steam; a patroller photographs a blocked fire lane.
    operator.post(f"/api/incidents/{active(client, detectors[2].device_id)['id']}/actions",
                  json={"action": "false_alarm", "actor": "测试"}).raise_for_status()
    reporter = InspectionReporterSim(REPORTER, community="香泉居民区")
    send(service, reporter.report(now_ms(), "fire_lane_blocked", building="xq-01", location="南门"))

    def profile_with_hazard() -> dict | None:
        p = client.get("/api/buildings/xq-01/profile").json()
        return p if p["rectifications"] else None

    p = wait_for(profile_with_hazard)
    assert p["building"]["id"] == "xq-01" and p["building"]["location"]["community"] == "香泉居民区"
    smoke = next(k for k in p["devices"] if k["kind"] == "smoke_detector")
    assert smoke == {"kind": "smoke_detector", "kind_label": smoke["kind_label"], "registered": len(detectors),
                     "online": 4, "offline": 0, "low_battery": 1, "tampered": 1, "never_seen": len(detectors) - 4}
    assert p["coverage"]["units"] == 18 * 4 and p["coverage"]["covered_units"] == 72
    (rect,) = p["rectifications"]
    assert rect["overdue"] is True and rect["category_zh"] == "消防通道占用"
    assert rect["incident"]["location"]["building_id"] == "xq-01"
    assert {i["title"] for i in p["active"]} >= {"烟感报警", "隐患上报：消防通道占用"}
    h = p["history"]
    assert (h["alarms"], h["false_alarms"], h["false_alarm_rate"]) == (2, 1, 0.5)
    assert sum(d["alarms"] for d in h["by_day"]) == 2 and sum(d["false_alarms"] for d in h["by_day"]) == 1
    codes = {f["code"]: f["points"] for f in p["risk"]["factors"]}
    assert codes["overdue_rectification"] == 8 and codes["tampered"] == 3 and codes["low_battery"] == 1
    assert p["risk"]["score"] == min(100, sum(codes.values()))
    assert {d["device_id"] for d in p["attention"]} >= {detectors[0].device_id, detectors[1].device_id}

    assert client.get("/api/buildings/xq-99/profile").status_code == 404
    assert client.get("/api/buildings/xq-01/profile", params={"days": 0}).status_code == 422


def test_the_charts_read_back_what_the_devices_sent(service: WanliService, client: httpx.Client) -> None:
    connect_telemetry(service)
    sim = register_building(service)
    cs, detectors = station(sim), sim.smoke_detectors()
    t0 = now_ms() - 10 * 60_000
    readings = [cs.publication(MessageClass.TELEMETRY, "station_status", t0 + i * 60_000, ambient_temp_c=24.0,
                               ports=[{"port": 1, "state": "charging", "temperature_c": 30.0 + i},
                                      {"port": 2, "state": "idle", "temperature_c": 25.0}])
                for i in range(5)]
    readings += [d.publication(MessageClass.TELEMETRY, "heartbeat", t0 + j * 1000, battery_pct=battery, rssi_dbm=-70)
                 for j, (d, battery) in enumerate([(detectors[0], 55.0), (detectors[1], 18.0), (detectors[0], 54.5)])]
    send(service, *readings)

    def charts() -> dict | None:
        c = client.get("/api/buildings/xq-01/telemetry").json()
        return c if len(c["charging_temperature"]) == 2 and sum(len(s["points"]) for s in c["detector_battery"]) == 3 else None

    c = wait_for(charts)
    assert c["available"] is True and c["store"] == "sqlite" and c["detectors_total"] == len(detectors)
    port1, port2 = c["charging_temperature"]
    assert (port1["label"], port1["unit"]) == (f"{cs.device_id} 1号口", "°C")
    assert [v for _, v in port1["points"]] == [30.0, 31.0, 32.0, 33.0, 34.0]  # oldest first
    assert [ts for ts, _ in port1["points"]] == [t0 + i * 60_000 for i in range(5)]
    assert {v for _, v in port2["points"]} == {25.0}
    low, other = c["detector_battery"]  # the lowest battery first
    assert (low["device_id"], [v for _, v in low["points"]]) == (detectors[1].device_id, [18.0])
    assert (other["device_id"], [v for _, v in other["points"]]) == (detectors[0].device_id, [55.0, 54.5])
    assert client.get("/api/buildings/nope/telemetry").status_code == 404


def test_who_was_told_lists_each_person_once_by_step(service: WanliService, client: httpx.Client) -> None:
    sim = register_building(service)
    detector = sim.smoke_detectors()[0]
    send(service, detector.alarm(now_ms()))
    incident = active(client, detector.device_id)

    def sent() -> list[dict] | None:
        rows = client.get(f"/api/incidents/{incident['id']}/notifications").json()
        return rows if rows and all(r["sent_at"] for r in rows) else None

    rows = wait_for(sent)
    assert {(r["step"], r["tier_zh"], r["role_zh"], r["recipient"]) for r in rows} == {
        (0, "楼栋", "楼组长", "楼组长 李阿姨"), (0, "居民区", "物业", "香泉物业 保安室"),
        (0, "微型消防站", "微型消防站", "香泉微型消防站")}
    assert next(r for r in rows if r["tier"] == "fire_station")["dispatch_id"] == f"{incident['id']}-0"
    assert client.get("/api/incidents/inc_nope/notifications").status_code == 404


def test_kpis_count_the_one_minute_rule_devices_overdue_hazards_and_false_alarms(
    service: WanliService, client: httpx.Client, operator: httpx.Client,
) -> None:
    sim = register_building(service)
    operator.post("/api/devices", json={"device_id": REPORTER, "kind": "inspection_report"}).raise_for_status()
    detectors = sim.smoke_detectors()
    send(service, detectors[0].alarm(now_ms()), detectors[1].heartbeat(now_ms()))
    first = active(client, detectors[0].device_id)
    operator.post(f"/api/incidents/{first['id']}/actions", json={"action": "acknowledge", "actor": "值班员"}).raise_for_status()
    operator.post(f"/api/incidents/{first['id']}/actions", json={"action": "dispatch", "actor": "值班员"}).raise_for_status()
    operator.post(f"/api/incidents/{first['id']}/actions", json={"action": "arrive", "actor": "值班员"}).raise_for_status()
    send(service, detectors[5].alarm(now_ms()))
    operator.post(f"/api/incidents/{active(client, detectors[5].device_id)['id']}/actions",
                  json={"action": "false_alarm", "actor": "值班员"}).raise_for_status()
    send(service, InspectionReporterSim(REPORTER).report(now_ms(), "fire_lane_blocked", building="xq-02"))

    k = wait_for(lambda: (r := client.get("/api/kpi").json())["overdue_rectifications"] and r)
    assert k["acknowledge"]["total"] == 1 and k["acknowledge"]["within"] == 1 and k["acknowledge"]["within_s"] == 60
    assert k["arrive"]["total"] == 1 and k["arrive"]["within"] == 1 and k["arrive"]["within_s"] == 180
    assert k["devices"]["total"] == len(sim.placed) + 1
    assert k["devices"]["online"] >= 2 and k["devices"]["online_rate"] == round(k["devices"]["online"] / k["devices"]["total"], 4)
    (overdue,) = k["overdue"]
    assert overdue["category_zh"] == "消防通道占用" and overdue["place"].startswith("香泉居民区 香泉 2号楼")
    (xq01,) = k["false_alarms_by_building"]
    assert (xq01["building_id"], xq01["alarms"], xq01["false_alarms"], xq01["rate"]) == ("xq-01", 2, 1, 0.5)
    assert k["by_tier_state"]["community"]["on_scene"] == 1
    assert sum(n for states in k["by_tier_state"].values() for n in states.values()) == k["active"]
    assert client.get("/api/kpi", params={"hours": 0}).status_code == 422


def test_the_new_routes_refuse_a_visitor_who_has_not_signed_in(service_factory: ServiceFactory,
                                                               service: WanliService) -> None:
    anonymous = service_factory.anonymous(service)
    for path in ("/api/map", "/api/buildings/xq-01/profile", "/api/buildings/xq-01/telemetry", "/api/kpi"):
        assert anonymous.get(path).status_code == 401, path
