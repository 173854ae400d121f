"""The simulated devices, populations, clock and expectations, with no broker: pure and deterministic."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import replace
from datetime import datetime

import pytest

from devices.catalog import KINDS
from devices.hierarchy import Building, hierarchy_from_dict, load_hierarchy
from devices.kind_slice import Placement, Row, building_code
from devices.kinds import SLICES
from devices.kinds.charging_station.simulator import ChargingStationSim
from devices.kinds.elderly_alarm.simulator import ElderlyAlarmSim
from devices.kinds.fire_station.simulator import FireStationSim
from devices.kinds.smoke_detector.simulator import SmokeDetectorSim
from devices.kinds.water_meter.simulator import WaterMeterSim
from devices.street_generator import device_rows, generate_street
from devices.topics import parse_topic
from simulators.clock import SHANGHAI, SimClock, next_local_time_ms, shanghai
from simulators.devices import SIMULATORS
from simulators.expectations import (
    Evidence,
    ExpectDeadLetters,
    ExpectDevices,
    ExpectIncident,
    ExpectNoIncident,
)
from simulators.load import STREET_MIX, build_messages
from simulators.population import Population, place_rows

T0 = int(datetime(2026, 11, 23, 6, 0, tzinfo=SHANGHAI).timestamp() * 1000)  # 06:00 in Shanghai
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000


def bodies(pubs):
    return [json.loads(p) for _t, p in pubs]


def two_days(device):
    out = device.start(T0)
    out += device.tick(T0 + 2 * DAY)
    return out


@pytest.mark.parametrize("kind", sorted(SIMULATORS))
def test_every_simulator_speaks_the_contract_and_numbers_its_messages(kind):
    device = SIMULATORS[kind](f"X-{kind[:4].upper()}-1", seq=100)
    pubs = two_days(device)
    if kind == "inspection_report":
        device.patrol(T0 + HOUR, ["xq-01", "xq-02"], reports=3)
        pubs += device.tick(T0 + DAY)
    seqs, stamps = [], []
    for topic, payload in pubs:
        address = parse_topic(topic)
        assert (address.kind, address.device_id) == (kind, device.device_id)
        msg = KINDS[kind].decode(address.msg_class, payload)  # raises on anything the contract refuses
        seqs.append(msg.seq)
        stamps.append(msg.ts)
    assert seqs == list(range(101, 101 + len(pubs)))  # +1 per message, on all its topics
    assert stamps == sorted(stamps)  # a device's clock does not run backwards
    assert len(pubs) > (2 if kind != "inspection_report" else 3)


@pytest.mark.parametrize("kind", sorted(SIMULATORS))
def test_simulators_are_deterministic_for_a_seed(kind):
    assert two_days(SIMULATORS[kind]("DEV-1", seed=7)) == two_days(SIMULATORS[kind]("DEV-1", seed=7))
    if kind not in ("inspection_report",):
        assert two_days(SIMULATORS[kind]("DEV-1", seed=7)) != two_days(SIMULATORS[kind]("DEV-1", seed=8))


@pytest.mark.parametrize("kind", ["smoke_detector", "charging_station", "fire_station", "elderly_alarm", "water_meter",
                                  "lift_camera"])
def test_periodic_telemetry_comes_at_the_kinds_real_cadence(kind):
    device = SIMULATORS[kind]("DEV-1")
    periodic = {"smoke_detector": "heartbeat", "charging_station": "station_status", "fire_station": "duty_status",
                "elderly_alarm": "heartbeat", "water_meter": "reading", "lift_camera": "heartbeat"}[kind]
    times = [b["ts"] for b in bodies(two_days(device)) if b["type"] == periodic]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    beat = KINDS[kind].heartbeat_s * 1000
    assert gaps and all(abs(g - beat) <= beat * 0.011 for g in gaps)  # drifting by at most 1 %


def test_a_smoke_detector_drains_its_battery_and_says_low_battery_once():
    detector = SmokeDetectorSim("SD-1", battery_pct=20.3, drain_pct_per_day=0.5)
    msgs = bodies(two_days(detector))
    batteries = [b["battery_pct"] for b in msgs if b["type"] == "heartbeat"]
    assert batteries == sorted(batteries, reverse=True) and batteries[0] > 20 > batteries[-1] > 19
    assert [b["type"] for b in msgs].count("low_battery") == 1
    assert all(-120 <= b["rssi_dbm"] <= -50 for b in msgs if b["type"] == "heartbeat")


def test_cooking_smoke_alarms_and_clears_by_itself_while_a_fire_keeps_sounding_hotter():
    kitchen = SmokeDetectorSim("SD-1")
    kitchen.start(T0)
    kitchen.cook(T0 + MIN, duration_s=240, mute=True)
    events = [b for b in bodies(kitchen.tick(T0 + 10 * MIN)) if b["type"] != "heartbeat"]
    assert [b["type"] for b in events] == ["alarm", "silenced", "alarm_cleared"]
    assert events[-1]["ts"] == T0 + MIN + 240_000

    fire = SmokeDetectorSim("SD-2")
    fire.start(T0)
    fire.burn(T0)
    alarms = [b for b in bodies(fire.tick(T0 + 5 * MIN)) if b["type"] == "alarm"]
    assert len(alarms) == 6  # every minute
    assert [a["temperature_c"] for a in alarms] == sorted(a["temperature_c"] for a in alarms)
    fire.extinguish(T0 + 5 * MIN + 1)
    assert [b["type"] for b in bodies(fire.tick(T0 + 10 * MIN)) if b["type"] != "heartbeat"] == ["alarm_cleared"]


def test_a_charging_ports_temperature_follows_its_load_and_a_runaway_climbs_fast_then_smokes():
    station = ChargingStationSim("CS-1", port_count=4)
    station.start(T0)
    station.plug_in(1, soc=0.2)
    snapshots = [b for b in bodies(station.tick(T0 + 40 * MIN)) if b["type"] == "station_status"]
    port1 = next(p for p in snapshots[-1]["ports"] if p["port"] == 1)
    assert port1["state"] == "charging" and 170 <= port1["power_w"] <= 190
    assert 22 + 0.07 * 180 - 2 < port1["temperature_c"] < 22 + 0.07 * 180 + 1  # ambient + ~0.07 °C/W after 4 τ

    station.thermal_runaway(1)
    out = bodies(station.tick(T0 + 52 * MIN))
    temps = [next(p for p in b["ports"] if p["port"] == 1)["temperature_c"] for b in out if b["type"] == "station_status"]
    assert temps[2] - temps[0] > 2 * 2  # faster than 2 °C a minute: the rule's threshold
    assert [b["type"] for b in out].count("smoke_detected") == 1
    assert out[-1]["smoke"] is True


def test_a_stuck_relay_keeps_feeding_a_full_battery_while_a_healthy_port_cuts_off():
    station = ChargingStationSim("CS-1", port_count=2)
    station.start(T0)
    station.plug_in(1, soc=0.998)
    station.plug_in(2, soc=0.998)
    station.keep_power_on_full(1)
    last = [b for b in bodies(station.tick(T0 + 5 * MIN)) if b["type"] == "station_status"][-1]
    stuck, healthy = last["ports"]
    assert stuck["state"] == healthy["state"] == "full"
    assert stuck["power_w"] > 20 and healthy["power_w"] == 0


def test_an_elderly_resident_is_active_only_by_day_and_not_at_all_once_ill():
    alarm = ElderlyAlarmSim("EA-1")
    msgs = bodies(two_days(alarm))
    active_hours = {shanghai(b["ts"]).hour for b in msgs if b["type"] == "activity"}
    assert active_hours and all(6 <= h < 24 for h in active_hours) and not active_hours & {0, 1, 2, 3, 4, 5}
    ill = ElderlyAlarmSim("EA-2")
    ill.start(T0)
    ill.stop_activity()
    msgs = bodies(ill.tick(T0 + DAY))
    assert [b["type"] for b in msgs].count("activity") == 0 and [b["type"] for b in msgs].count("heartbeat") >= 23
    meter = WaterMeterSim("WM-2")
    meter.start(T0)
    meter.stop_use()
    assert sum(b.get("interval_l", 0) for b in bodies(meter.tick(T0 + DAY))) == 0


def test_a_fire_station_changes_shifts_at_eight_and_answers_dispatches_with_human_delays():
    station = FireStationSim("MFS-1")
    msgs = bodies(two_days(station))
    shifts = [shanghai(b["ts"]) for b in msgs if b["type"] == "shift_change"]
    assert [(t.hour, t.minute) for t in shifts] == [(8, 0), (20, 0), (8, 0), (20, 0)]
    for response, ack_range in (("prompt", (10, 40)), ("slow", (90, 150))):
        crew = FireStationSim("MFS-2", response=response)
        crew.start(T0)
        assert crew.on_dispatch({"dispatch_id": "inc_1-0"}, T0 + MIN) == "inc_1-0"
        assert crew.on_dispatch({"dispatch_id": "inc_1-0"}, T0 + MIN) is None  # a notice sent twice is one dispatch
        steps = {b["type"]: b["ts"] for b in bodies(crew.tick(T0 + 20 * MIN)) if b["type"].startswith("dispatch")}
        assert list(steps) == ["dispatch_ack", "dispatch_depart", "dispatch_on_scene"]
        assert ack_range[0] <= (steps["dispatch_ack"] - T0 - MIN) / 1000 <= ack_range[1]
    silent = FireStationSim("MFS-3", response="silent")
    silent.start(T0)
    silent.on_dispatch(b'{"dispatch_id":"inc_2-0"}', T0)
    assert not [b for b in bodies(silent.tick(T0 + HOUR)) if b["type"].startswith("dispatch")]


def test_a_device_off_the_network_sends_nothing_until_it_comes_back():
    detector = SmokeDetectorSim("SD-1")
    detector.start(T0, phase=0.0)
    (will,) = detector.go_silent(T0 + 1, last_will=True)
    assert json.loads(will[1])["type"] == "offline" and will[0].endswith("/status")
    assert detector.tick(T0 + DAY) == []
    back = bodies(detector.come_back(T0 + DAY) + detector.tick(T0 + DAY + MIN))
    assert [b["type"] for b in back] == ["online", "heartbeat"]


def test_the_whole_street_is_placed_by_each_kinds_own_placement():
    """One placement (devices/placement.py, the kinds' hooks) serves the generated street's registration file and
    the populations; its counts follow the street's shape, worked out here from the hierarchy itself."""
    raw = generate_street()
    street = hierarchy_from_dict(raw)
    rows = place_rows(street, whole_street=True)
    assert rows == device_rows(raw) and len(rows) == 50_615 and len({r[0] for r in rows}) == len(rows)
    kinds = Counter(r[1] for r in rows)
    assert kinds == {
        "smoke_detector": sum(b.floors * b.units_per_floor for b in street.buildings.values()),
        "lift_camera": sum(b.high_rise for b in street.buildings.values()),
        "charging_station": sum(len(c.building_ids[::3]) for c in street.communities.values()),
        "elderly_alarm": len(street.households), "water_meter": len(street.households),
        "fire_station": len(street.fire_stations)}
    sample = load_hierarchy()
    assert Counter(r[1] for r in place_rows(sample, building_ids=["xq-01"])) == {
        "smoke_detector": 72, "lift_camera": 1, "charging_station": 1, "elderly_alarm": 3, "water_meter": 3,
        "fire_station": 1}


def test_a_registered_kinds_placement_is_all_it_takes_to_place_it(monkeypatch: pytest.MonkeyPatch):
    def one_per_building(building: Building, _index: int) -> list[Row]:
        return [(f"XX-{building_code(building.id)}", "extra_kind", building.id, 1, "", building.name)]

    extra = replace(SLICES["lift_camera"], placement=Placement(building=one_per_building))
    monkeypatch.setitem(SLICES, "extra_kind", extra)
    rows = place_rows(load_hierarchy(), building_ids=["fp-01"])
    assert ("XX-FP01", "extra_kind", "fp-01", 1, "", "富平 1号楼") in rows
    assert "lift_camera" not in {r[1] for r in rows}  # fp-01 has six floors: no lift camera


def test_a_population_publishes_what_is_due_in_time_order_and_wakes_a_rescheduled_device():
    population = Population.of(load_hierarchy(), building_ids=["xq-01"])
    assert len(population.start(T0)) == 81  # every device says online
    hour = population.tick(T0 + HOUR)
    assert 60 <= len([t for t, _ in hour if t.endswith("charging_station/CS-XQ01-01/telemetry")]) <= 62
    detector = population.device("SD-XQ01-0101")
    detector.burn(T0 + HOUR + 1000)
    population.touch(detector)
    assert any(t.endswith("SD-XQ01-0101/event") for t, _ in population.tick(T0 + HOUR + 2000))


def test_the_simulated_clock_runs_fast_jumps_and_refuses_to_jump_a_clock_it_does_not_own():
    now = [0.0]
    clock = SimClock(1_000_000, speed=60, monotonic=lambda: now[0])
    now[0] = 2.0
    assert clock.now_ms() == 1_000_000 + 120_000
    clock.advance(HOUR)
    assert clock.now_ms() == 1_000_000 + 120_000 + HOUR
    clock.set_speed(1)
    now[0] = 3.0
    assert clock.now_ms() == 1_000_000 + 121_000 + HOUR
    wall = SimClock.wall()
    with pytest.raises(ValueError, match="wall clock"):
        wall.advance(1)
    with pytest.raises(ValueError, match="speed 1"):
        wall.set_speed(10)
    assert shanghai(next_local_time_ms(T0, 8)).hour == 8 and next_local_time_ms(T0, 8) - T0 == 2 * HOUR


def test_the_street_load_mix_builds_every_kind_and_only_valid_messages():
    population = Population.of(load_hierarchy(), whole_street=True)
    messages = build_messages(population.records, 5000, STREET_MIX, seed=3)
    kinds = {parse_topic(t).kind for t, _ in messages}
    assert kinds >= {"smoke_detector", "charging_station", "lift_camera", "elderly_alarm", "water_meter", "fire_station"}
    for topic, payload in messages:
        address = parse_topic(topic)
        KINDS[address.kind].decode(address.msg_class, payload)


def incident(**kw):
    base = {"id": "inc_1", "condition": "smoke_alarm", "device_id": "SD-1", "kind": "smoke_detector", "scope": "",
            "severity": "high", "state": "open", "tier": "community", "opened_at": "2026-11-23T00:01:00Z",
            "updated_at": "2026-11-23T00:01:00Z", "event_count": 1, "members": []}
    return base | kw


def test_expectations_judge_what_the_api_showed_and_say_why_when_unmet():
    start = int(datetime.fromisoformat("2026-11-23T00:00:00+00:00").timestamp() * 1000)
    ev = Evidence(incidents=[incident(), incident(id="inc_2", condition="suspected_fire", severity="critical",
                                              scope="building:xq-01", members=["SD-1", "SD-2"], tier="street")],
                  tier_seen_ms={("inc_2", "street"): start + 70_000}, marks={"start": start},
                  dead_letters={"bad_json": 1}, devices=[{"device_id": "SD-1", "kind": "smoke_detector",
                                                          "health": ["online"], "last_type": "alarm"}])
    assert ExpectIncident("smoke_alarm", severity="high", within_s=60, tier="community").check(ev).met
    late = ExpectIncident("smoke_alarm", within_s=30).check(ev)
    assert not late.met and "opened 60 s after start" in late.detail
    assert ExpectIncident("suspected_fire", tier="street", tier_within_s=90, members_at_least=2).check(ev).met
    slow = ExpectIncident("suspected_fire", tier="district").check(ev)
    assert not slow.met and "reached only tier street" in slow.detail
    assert not ExpectIncident("smoke_alarm", severity="critical").check(ev).met
    assert not ExpectNoIncident(("suspected_*",)).check(ev).met
    assert ExpectNoIncident(("offline",)).check(ev).met
    assert ExpectDeadLetters("bad_json", count=1).check(ev).met and not ExpectDeadLetters("*", count=0).check(ev).met
    assert ExpectDevices(health="online", every=True).check(ev).met
    assert not ExpectDevices(last_type="alarm_cleared", device="SD-1").check(ev).met


def test_expectations_and_what_was_seen_read_as_chinese_sentences_beside_the_machine_form():
    start = int(datetime.fromisoformat("2026-11-23T00:00:00+00:00").timestamp() * 1000)
    seen = incident(device_id="SD-XQ01-0301", title="烟感报警", state="on_scene",
                    location={"unit": "0301", "building": "香泉 1号楼"})
    ev = Evidence(incidents=[seen], marks={"start": start, "cooking": start}, mark_names={"cooking": "开始炒菜"},
                  dead_letters={"bad_json": 1})
    kitchen = ExpectIncident("smoke_alarm", severity="high", device="SD-XQ01-0301", within_s=60, after="cooking",
                             tier="community", state="active")
    met = kitchen.check(ev)
    assert met.met and met.detail == "seen: smoke_alarm@SD-XQ01-0301 high on_scene tier=community"
    assert met.expectation_zh == "0301室烟感报警一起（高），开始炒菜后 1 分钟内生成，报至居民区，未结案"
    assert met.detail_zh == "实见：0301室烟感报警（高），已到场，已报至居民区"
    late = ExpectIncident("smoke_alarm", device="SD-XQ01-0301", within_s=30, after="cooking").check(ev)
    assert not late.met and late.detail_zh == "0301室烟感报警在开始炒菜后 60 秒才生成"
    assert ExpectIncident("charging_full:2", severity="warning").describe_zh() == "2 号口充满后仍供电一起（中）"
    assert ExpectIncident("mass_offline", scope="street:wanli").describe_zh() == "全街道大面积离线一起"
    written = ExpectIncident("smoke_alarm", device="SD-XQ01-0[5-7]0[12]", text="四户烟感各报警一起")
    assert written.describe_zh() == "四户烟感各报警一起" and "SD-XQ01-0[5-7]0[12]" in written.describe()
    assert ExpectNoIncident(("thermal_runaway:[!3]*", "offline")).describe_zh() == "不产生3 号口以外的疑似电池热失控、设备离线"
    nothing = ExpectNoIncident(("smoke_alarm",)).check(ev)
    assert not nothing.met and nothing.detail_zh == "出现 1 起：0301室烟感报警（高），已到场，已报至居民区"
    kept = ExpectDeadLetters("bad_json", count=1).check(ev)
    assert (kept.expectation_zh, kept.detail_zh) == ("「JSON 格式错误」被拒收并留存恰好 1 条", "留存 1 条（JSON 格式错误 1 条）")
    assert ExpectDevices(last_type="alarm_cleared", device="SD-XQ01-0301").describe_zh() == "0301室烟感最后一条消息为「消警」"
    assert met.as_dict()["detail_zh"] == met.detail_zh
