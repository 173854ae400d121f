"""Rules across a restart, with a fake clock: each rule's snapshot goes through JSON into a fresh rule.

``restarted(rule)`` is what the engine does at a checkpoint and at the next start: snapshot,
JSON (as stored in SQL), a new instance, restore.
"""

import json

from alerts.incidents import Severity
from alerts.rules import default_rules
from alerts.rules.base import Place
from devices.kinds.charging_station import contract as cs
from devices.kinds.charging_station.rules import StationOffline, ThermalRunaway
from devices.kinds.elderly_alarm import contract as ea
from devices.kinds.elderly_alarm.rules import EmergencyPress, Inactivity
from devices.kinds.fire_station import contract as fs
from devices.kinds.fire_station.rules import DispatchResponse
from devices.kinds.inspection_report import contract as ir
from devices.kinds.inspection_report.rules import RecurringHazard
from devices.kinds.smoke_detector import contract as sd
from devices.kinds.smoke_detector.rules import (
    AlarmFlapping,
    DetectorMaintenance,
    DetectorSilence,
    SuspectedFire,
)
from devices.kinds.water_meter import contract as wm
from devices.kinds.water_meter.rules import LowWaterUse
from devices.reading import Reading
from tests.support.rules import RuleWorld

T0 = 1_795_000_000_000
S, MIN, H = 1000, 60_000, 3_600_000
RULES = [type(r) for r in default_rules()]


def restarted(rule):
    """The rule as a new engine gets it back: its snapshot through JSON into a fresh instance."""
    fresh = type(rule)()
    snap = rule.snapshot()
    if snap is not None:
        fresh.restore(json.loads(json.dumps(snap)))
    return fresh


def world(*places):
    return RuleWorld(RULES, places)


def feed(rule, ctx, kind, device, message, now=None, street="wanli"):
    return rule.on_reading(Reading(street, kind, device, message.CLASS, message, message.ts), ctx,
                           message.ts if now is None else now)


def test_every_stateful_rule_snapshots_plain_json_data_and_a_stateless_one_none():
    for rule in default_rules():
        snap = rule.snapshot()
        assert snap is None or json.loads(json.dumps(snap)) == snap, rule.name
    assert len({r.name for r in default_rules()}) == len(default_rules())  # one checkpoint row per rule


# -- windows ---------------------------------------------------------------------------------------------------------


def test_a_second_detector_alarming_after_a_restart_within_the_window_is_still_a_suspected_fire():
    ctx = world(Place("SD-1", "smoke_detector", "xq-01", 3, "0301"), Place("SD-2", "smoke_detector", "xq-01", 4, "0401"))
    rule = SuspectedFire()
    assert feed(rule, ctx, "smoke_detector", "SD-1", sd.Alarm(v=1, ts=T0, seq=1)) == []
    rule = restarted(rule)
    (s,) = feed(rule, ctx, "smoke_detector", "SD-2", sd.Alarm(v=1, ts=T0 + 90 * S, seq=1))
    assert (s.condition, s.severity, s.members) == ("suspected_fire", Severity.CRITICAL, ("SD-1", "SD-2"))
    assert "相邻楼层" in s.title


def test_flapping_and_muting_counts_go_on_across_a_restart():
    ctx = world(Place("SD-1", "smoke_detector", "xq-01", 3, "0301"))
    flapping, muting = AlarmFlapping(), DetectorMaintenance()
    for i in range(4):  # four switches: at the count, not over it
        message = sd.Alarm(v=1, ts=T0 + i * MIN, seq=i) if i % 2 == 0 else sd.AlarmCleared(v=1, ts=T0 + i * MIN, seq=i)
        assert feed(flapping, ctx, "smoke_detector", "SD-1", message) == []
    for i in range(2):
        assert feed(muting, ctx, "smoke_detector", "SD-1", sd.Silenced(v=1, ts=T0 + i * H, seq=i)) == []
    flapping, muting = restarted(flapping), restarted(muting)
    (s,) = feed(flapping, ctx, "smoke_detector", "SD-1", sd.Alarm(v=1, ts=T0 + 5 * MIN, seq=9))
    assert s.condition == "flapping" and "切换 5 次" in s.detail
    (s,) = feed(muting, ctx, "smoke_detector", "SD-1", sd.Silenced(v=1, ts=T0 + 3 * H, seq=9))
    assert s.condition == "repeated_silencing" and "消音 3 次" in s.detail


def status(ts, temp):
    port = cs.Port(port=1, state="charging", temperature_c=temp, current_a=3.0, power_w=600.0, session_s=600)
    return cs.StationStatus(v=1, ts=ts, seq=1, ports=[port], mains_power=True)


def test_a_temperature_climbing_through_a_restart_is_still_seen_as_thermal_runaway():
    ctx, rule = world(), ThermalRunaway()
    assert feed(rule, ctx, "charging_station", "CS-1", status(T0, 40.0)) == []
    assert feed(rule, ctx, "charging_station", "CS-1", status(T0 + MIN, 43.0)) == []
    rule = restarted(rule)
    (s,) = feed(rule, ctx, "charging_station", "CS-1", status(T0 + 2 * MIN, 46.0))
    assert s.condition == "thermal_runaway:1" and "3.0 °C/分钟" in s.detail


def test_a_cancel_after_a_restart_still_lowers_the_press():
    ctx, rule = world(), EmergencyPress()
    feed(rule, ctx, "elderly_alarm", "EA-1", ea.Press(v=1, ts=T0, seq=1))
    (s,) = feed(restarted(rule), ctx, "elderly_alarm", "EA-1", ea.Cancel(v=1, ts=T0 + 20 * S, seq=2))
    assert (s.severity, s.downgrade) == (Severity.WARNING, True)


def test_half_a_day_of_water_readings_spans_a_restart():
    ctx, rule = world(), LowWaterUse()
    for h in range(1, 7):
        assert feed(rule, ctx, "water_meter", "WM-1", wm.Reading(v=1, ts=T0 + h * H, seq=h, total_l=100.0,
                                                                  interval_l=0.1, interval_s=3600)) == []
    rule = restarted(rule)
    signals = [s for h in range(7, 13) for s in feed(rule, ctx, "water_meter", "WM-1", wm.Reading(
        v=1, ts=T0 + h * H, seq=h, total_l=100.0, interval_l=0.1, interval_s=3600))]
    assert [s.condition for s in signals] == ["low_water_use"]


def test_recurring_hazards_are_counted_across_a_restart():
    ctx, rule = world(), RecurringHazard()
    for i in range(2):
        feed(rule, ctx, "inspection_report", "RIDER-1", ir.HazardReport(
            v=1, ts=T0 + i * H, seq=i, report_id=f"R{i}", category="corridor_clutter", building="xq-01", photos=[]))
    (s,) = feed(restarted(rule), ctx, "inspection_report", "RIDER-1", ir.HazardReport(
        v=1, ts=T0 + 3 * H, seq=3, report_id="R3", category="corridor_clutter", building="xq-01", photos=[]))
    assert s.condition == "recurring_hazard:corridor_clutter"


# -- dispatches ------------------------------------------------------------------------------------------------------


def test_a_dispatch_pending_at_a_restart_still_breaches_on_time():
    ctx, rule = world(), DispatchResponse()
    rule.expect_dispatch("inc_1-0", "MFS-XQ", "inc_1", T0)
    assert rule.changed  # the engine writes it right after the batch
    rule = restarted(rule)
    assert rule.on_tick(ctx, T0 + 60 * S) == []
    (s,) = rule.on_tick(ctx, T0 + 60 * S + 1)
    assert s.condition == "dispatch_ack_late:inc_1-0"
    assert feed(rule, ctx, "fire_station", "MFS-XQ", fs.DispatchAck(v=1, ts=T0 + 70 * S, seq=1,
                                                                     dispatch_id="inc_1-0")) == []
    assert rule.response_times()[0]["ack_s"] == 70.0


def test_deadlines_that_passed_while_the_engine_was_down_breach_at_the_first_tick():
    ctx, rule = world(), DispatchResponse()
    rule.expect_dispatch("inc_1-0", "MFS-XQ", "inc_1", T0)
    feed(rule, ctx, "fire_station", "MFS-XQ", fs.DispatchAck(v=1, ts=T0 + 30 * S, seq=1, dispatch_id="inc_1-0"))
    rule = restarted(rule)  # down for ten minutes: acknowledged in time, never on scene
    assert [s.condition for s in rule.on_tick(ctx, T0 + 10 * MIN)] == ["dispatch_arrival_late:inc_1-0"]
    assert rule.on_tick(ctx, T0 + 10 * MIN + S) == []


# -- dead-man timers: the outage is not the devices' silence ---------------------------------------------------------


def stations(n, last_seen_ms=None):
    return [Place(f"CS-{i:03d}", "charging_station", f"b-{i:03d}", None, "", "", "wanli", last_seen_ms)
            for i in range(n)]


def test_a_restart_after_an_outage_pages_nobody_the_devices_get_their_whole_limit_again():
    places = stations(30)  # more than a storm's worth
    ctx, rule = world(*places), StationOffline()
    rule.on_tick(ctx, T0)
    for p in places:
        feed(rule, ctx, "charging_station", p.device_id, status(T0 + 50 * S, 30.0))
    rule.on_tick(ctx, T0 + MIN)  # the last checkpoint
    rule = restarted(rule)
    back = T0 + MIN + 20 * MIN  # twenty minutes down: far past the three-minute limit
    # heard 10 s before the checkpoint: 2 min 50 s of its limit are left after the restart
    assert [s for t in range(0, 170 * S + 1, 10 * S) for s in rule.on_tick(ctx, back + t)] == []
    (storm,) = rule.on_tick(ctx, back + 170 * S + 1)  # silent since the restart as well: truly overdue
    assert storm.condition == "mass_offline" and len(storm.members) == 30


def test_a_device_already_silent_before_the_stop_keeps_the_silence_it_had():
    places = stations(2)
    ctx, rule = world(*places), StationOffline()
    rule.on_tick(ctx, T0)
    feed(rule, ctx, "charging_station", "CS-000", status(T0 + 10 * S, 30.0))  # CS-001 never reports
    rule.on_tick(ctx, T0 + 2 * MIN)  # checkpoint: CS-001 silent two minutes, CS-000 1 min 50 s
    rule = restarted(rule)
    back = T0 + 2 * MIN + H
    assert rule.on_tick(ctx, back) == []  # the first tick after the restart
    assert rule.on_tick(ctx, back + MIN) == []
    assert rule.on_tick(ctx, back + MIN + S) == []  # CS-001's three minutes are up: held a storm window
    assert [s.device_id for s in rule.on_tick(ctx, back + MIN + S + 120 * S)] == ["CS-001"]
    assert [s.device_id for s in rule.on_tick(ctx, back + MIN + 10 * S + 240 * S)] == ["CS-000"]


def test_a_storm_in_progress_at_the_stop_is_still_one_incident_that_hears_who_is_back():
    places = stations(20)
    ctx, rule = world(*places), StationOffline()
    rule.on_tick(ctx, T0)
    (storm,) = rule.on_tick(ctx, T0 + 3 * MIN + S)
    rule = restarted(rule)
    back = T0 + 10 * MIN
    assert rule.on_tick(ctx, back) == []  # still offline, still one storm: nothing new
    for p in places:
        feed(rule, ctx, "charging_station", p.device_id, status(back + S, 30.0), now=back + S)
    (done,) = rule.on_tick(ctx, back + 2 * S)
    assert (done.key, done.downgrade, done.update_only) == (storm.key, True, True)
    assert "20 个充电站已全部恢复上报" in done.detail


def test_without_a_snapshot_the_registrys_last_seen_seeds_the_timer_the_outage_not_counted():
    # The registry wrote down CS-000 seen at T0 and CS-001 at T0 - 2 min; the engine (no checkpoint) starts at T0 + 1 h.
    places = [*stations(1, last_seen_ms=T0), Place("CS-001", "charging_station", "b-1", None, "", "", "wanli",
                                                   T0 - 2 * MIN)]
    ctx, rule = world(*places), StationOffline()
    rule.restore({})  # what a first start after an upgrade gets: nothing
    start = T0 + H
    assert rule.on_tick(ctx, start) == []
    assert rule.on_tick(ctx, start + MIN) == []  # CS-001 had two minutes of silence: one left
    assert rule.on_tick(ctx, start + MIN + S) == []  # held
    (s,) = rule.on_tick(ctx, start + MIN + S + 120 * S)
    assert s.device_id == "CS-001" and "已 5 分钟没有任何上报" in s.detail  # 2 before the stop, 3 after


def test_a_thousand_detectors_after_a_long_outage_restart_quietly():
    places = [Place(f"SD-{i:04d}", "smoke_detector", f"b-{i % 40:02d}", 1, "0101", "", "wanli", T0) for i in range(1000)]
    ctx, rule = world(*places), DetectorSilence()
    rule.restore({})
    start = T0 + 2 * 24 * H  # down for two days, longer than the twelve-hour limit
    assert [s for k in range(12 * 60) for s in rule.on_tick(ctx, start + k * MIN)] == []


def test_the_inactivity_check_does_not_count_the_outage_as_a_day_without_activity():
    ctx = world(*[Place(f"EA-{i}", "elderly_alarm", "xq-01", 3, "0301") for i in range(3)])
    rule = Inactivity()
    rule.on_tick(ctx, T0)
    for i in range(3):
        feed(rule, ctx, "elderly_alarm", f"EA-{i}", ea.Activity(v=1, ts=T0 + H, seq=1, source="door"))
        feed(rule, ctx, "elderly_alarm", f"EA-{i}", ea.Heartbeat(v=1, ts=T0 + 2 * H, seq=2, battery_pct=80))
    rule.on_tick(ctx, T0 + 2 * H)  # checkpoint
    rule = restarted(rule)
    back = T0 + 14 * H  # twelve hours down
    for h in range(23):
        for i in range(3):
            feed(rule, ctx, "elderly_alarm", f"EA-{i}", ea.Heartbeat(v=1, ts=back + h * H, seq=3 + h, battery_pct=80),
                 now=back + h * H)
        assert rule.on_tick(ctx, back + h * H) == []  # 23 h since the last activity counting only time listened
    signals = rule.on_tick(ctx, back + 23 * H + 1)
    assert sorted(s.device_id for s in signals) == ["EA-0", "EA-1", "EA-2"]
