import time
from functools import partial

from alerts.incidents import Severity, State, open_or_update
from alerts.rules import default_rules
from alerts.rules.base import Place
from devices.hierarchy import Location
from devices.kinds.elderly_alarm import contract as ea
from devices.kinds.elderly_alarm.rules import (
    RULES,
    AlarmOffline,
    EmergencyPress,
    Fall,
    Inactivity,
    LowBattery,
)
from tests.support.readings import reading as support_reading
from tests.support.rules import rule_context, run_rule

T0 = 1_772_352_000_000  # 2026-03-01 08:00 UTC
S, H = 1000, 3_600_000
KIND = "elderly_alarm"


Ctx = partial(rule_context, RULES)  # Ctx(places=…, overrides={device_id: {threshold: value}})

def homes(*ids):
    return [Place(d, KIND, "xq-01", 3, "0301") for d in ids]


def reading(message, device="EA-1"):
    return support_reading(KIND, message, device)


def run(rule, ctx, *messages, device="EA-1"):
    return run_rule(rule, ctx, KIND, device, messages)


def press(ts):
    return ea.Press(v=1, ts=ts, seq=1)


def cancel(ts):
    return ea.Cancel(v=1, ts=ts, seq=2)


def activity(ts, source="door"):
    return ea.Activity(v=1, ts=ts, seq=3, source=source)


def heartbeat(ts, battery=90.0):
    return ea.Heartbeat(v=1, ts=ts, seq=4, battery_pct=battery)


def test_the_rules_are_registered():
    assert {type(r) for r in default_rules()} >= set(RULES)


# --- press and cancel -------------------------------------------------------------------------------------

def test_a_press_is_critical():
    (s,) = run(EmergencyPress(), Ctx(), press(T0))
    assert (s.condition, s.category, s.severity) == ("emergency_press", "welfare", Severity.CRITICAL)
    assert not s.downgrade


def test_a_cancel_within_the_grace_lowers_the_same_incident_and_says_call_back():
    rule, ctx = EmergencyPress(), Ctx()
    (pressed,) = run(rule, ctx, press(T0))
    (cancelled,) = run(rule, ctx, cancel(T0 + 12 * S))
    assert cancelled.key == pressed.key == "EA-1:emergency_press"
    assert (cancelled.severity, cancelled.downgrade) == (Severity.WARNING, True)
    assert cancelled.detail.startswith("老人在 12 秒内取消，请仍回电确认")


def test_the_cancelled_press_stays_on_record_as_a_warning():
    rule, ctx, loc = EmergencyPress(), Ctx(), Location("wanli", "万里街道")
    (pressed,) = run(rule, ctx, press(T0))
    (cancelled,) = run(rule, ctx, cancel(T0 + 20 * S))
    incident, _ = open_or_update(None, pressed, loc, T0, "inc_1")
    lowered, entry = open_or_update(incident, cancelled, loc, T0 + 20 * S, "inc_2")
    assert (lowered.id, lowered.state, lowered.severity) == ("inc_1", State.OPEN, Severity.WARNING)
    assert entry is not None and entry.action == "downgrade_severity" and "请仍回电确认" in entry.note


def test_the_grace_boundary():
    rule, ctx = EmergencyPress(), Ctx()
    run(rule, ctx, press(T0))
    assert len(run(rule, ctx, cancel(T0 + 60 * S))) == 1  # exactly 60 s is within
    run(rule, ctx, press(T0 + H))
    assert run(rule, ctx, cancel(T0 + H + 60 * S + 1)) == []  # a late cancel raises nothing: the press stands


def test_a_cancel_without_a_press_or_a_second_cancel_says_nothing():
    rule, ctx = EmergencyPress(), Ctx()
    assert run(rule, ctx, cancel(T0)) == []
    run(rule, ctx, press(T0 + S))
    assert len(run(rule, ctx, cancel(T0 + 2 * S), cancel(T0 + 3 * S))) == 1


def test_a_cancel_stamped_before_the_press_is_not_a_cancel_of_it():
    rule, ctx = EmergencyPress(), Ctx()
    run(rule, ctx, press(T0))
    assert run(rule, ctx, cancel(T0 - S)) == []


def test_a_longer_grace_for_one_device():
    rule, ctx = EmergencyPress(), Ctx(overrides={"EA-SLOW": {"cancel_grace_s": 120}})
    run(rule, ctx, press(T0), device="EA-SLOW")
    assert len(run(rule, ctx, cancel(T0 + 90 * S), device="EA-SLOW")) == 1
    run(rule, ctx, press(T0))
    assert run(rule, ctx, cancel(T0 + 90 * S)) == []


# --- fall, battery ----------------------------------------------------------------------------------------

def test_a_fall_is_critical_welfare():
    (s,) = run(Fall(), Ctx(), ea.Fall(v=1, ts=T0, seq=1, confidence=0.93))
    assert (s.condition, s.category, s.severity) == ("fall", "welfare", Severity.CRITICAL)
    assert "93%" in s.detail
    (s,) = run(Fall(), Ctx(), ea.Fall(v=1, ts=T0, seq=1))
    assert "置信度" not in s.detail


def test_low_battery_by_event_or_heartbeat_under_the_threshold():
    (s,) = run(LowBattery(), Ctx(), ea.LowBattery(v=1, ts=T0, seq=1, battery_pct=15))
    assert (s.condition, s.category, s.severity) == ("low_battery", "maintenance", Severity.WARNING)
    assert [s.condition for s in run(LowBattery(), Ctx(), heartbeat(T0, 19.9))] == ["low_battery"]
    assert run(LowBattery(), Ctx(), heartbeat(T0, 20)) == []


def test_a_device_override_of_the_battery_threshold():
    ctx = Ctx(overrides={"EA-COLD": {"low_battery_pct": 30}})
    assert run(LowBattery(), ctx, heartbeat(T0, 25), device="EA-COLD") != []
    assert run(LowBattery(), ctx, heartbeat(T0, 25)) == []


# --- inactivity -------------------------------------------------------------------------------------------


def beating(rule, ctx, ids, until_h, from_h=1):
    """Hourly heartbeats of these devices (alive, whatever their residents do), up to ``until_h`` hours after T0."""
    for h in range(from_h, until_h + 1):
        for d in ids:
            rule.on_reading(reading(heartbeat(T0 + h * H), d), ctx, T0 + h * H)


def test_no_activity_for_a_day_is_a_welfare_check_never_seen_counting_from_the_first_tick():
    rule, ctx = Inactivity(), Ctx(places=homes("EA-A", "EA-B"))
    assert rule.on_tick(ctx, T0) == []
    rule.on_reading(reading(activity(T0 + H), "EA-A"), ctx, T0 + H)
    beating(rule, ctx, ["EA-A", "EA-B"], 25)
    assert rule.on_tick(ctx, T0 + 24 * H) == []  # exactly a day: not yet
    (s,) = rule.on_tick(ctx, T0 + 24 * H + 1)
    assert (s.device_id, s.condition, s.category, s.severity) == ("EA-B", "no_activity", "welfare", Severity.HIGH)
    assert "自监测开始已 24 小时" in s.detail
    assert rule.on_tick(ctx, T0 + 24 * H + 2) == []  # raised once
    (s,) = rule.on_tick(ctx, T0 + 25 * H + 1)
    assert s.device_id == "EA-A" and "自监测开始" not in s.detail


def test_heartbeats_are_not_activity():
    rule, ctx = Inactivity(), Ctx(places=homes("EA-A"))
    rule.on_tick(ctx, T0)
    for h in range(1, 25):
        rule.on_reading(reading(heartbeat(T0 + h * H), "EA-A"), ctx, T0 + h * H)
    assert [s.device_id for s in rule.on_tick(ctx, T0 + 24 * H + 1)] == ["EA-A"]


def test_activity_of_any_source_rearms_the_check():
    rule, ctx = Inactivity(), Ctx(places=homes("EA-A"))
    rule.on_tick(ctx, T0)
    beating(rule, ctx, ["EA-A"], 50)
    assert len(rule.on_tick(ctx, T0 + 25 * H)) == 1
    rule.on_reading(reading(activity(T0 + 26 * H, "water"), "EA-A"), ctx, T0 + 26 * H)
    assert rule.on_tick(ctx, T0 + 50 * H) == []
    assert len(rule.on_tick(ctx, T0 + 50 * H + 1)) == 1


def test_a_shorter_inactivity_period_for_one_home():
    rule, ctx = Inactivity(), Ctx(places=homes("EA-A", "EA-FRAIL"), overrides={"EA-FRAIL": {"inactivity_h": 12}})
    rule.on_tick(ctx, T0)
    beating(rule, ctx, ["EA-A", "EA-FRAIL"], 12)
    assert [s.device_id for s in rule.on_tick(ctx, T0 + 12 * H + 1)] == ["EA-FRAIL"]


def test_on_tick_time_with_3000_elderly_alarms():
    ids = [f"EA-{i:04d}" for i in range(3000)]
    ctx, rule = Ctx(places=homes(*ids)), Inactivity()
    started = time.perf_counter()
    rule.on_tick(ctx, T0)
    first = time.perf_counter() - started
    for i, d in enumerate(ids):
        rule.on_reading(reading(activity(T0 + H), d), ctx, T0 + H + i)
    beating(rule, ctx, ids, 26, from_h=24)
    runs = 200
    started = time.perf_counter()
    for k in range(runs):
        assert rule.on_tick(ctx, T0 + 2 * H + k * 1000) == []
    steady = (time.perf_counter() - started) / runs
    started = time.perf_counter()
    assert len(rule.on_tick(ctx, T0 + 26 * H)) == 3000
    storm = time.perf_counter() - started
    print(f"\nInactivity.on_tick, 3000 alarms: first {first * 1e3:.2f} ms, steady {steady * 1e3:.3f} ms, "
          f"all inactive at once {storm * 1e3:.2f} ms")
    assert steady < 0.05


def test_a_new_registration_is_watched_from_the_next_population_refresh_within_a_minute():
    rule, ctx = Inactivity(), Ctx(places=homes("EA-A"))
    rule.on_tick(ctx, T0)
    ctx.places["EA-NEW"] = homes("EA-NEW")[0]
    beating(rule, ctx, ["EA-A", "EA-NEW"], 25)
    rule.on_tick(ctx, T0 + 30 * S)  # not re-read yet
    rule.on_tick(ctx, T0 + 60 * S)  # re-read: EA-NEW counts from here
    assert [s.device_id for s in rule.on_tick(ctx, T0 + 24 * H + 1)] == ["EA-A"]
    assert rule.on_tick(ctx, T0 + 24 * H + 60 * S) == []
    assert [s.device_id for s in rule.on_tick(ctx, T0 + 24 * H + 60 * S + 1)] == ["EA-NEW"]


def test_an_alarm_that_is_itself_silent_is_offline_not_inactive_and_is_checked_again_once_heard():
    rule, ctx = Inactivity(), Ctx(places=homes("EA-A", "EA-QUIET"))
    rule.on_tick(ctx, T0)
    beating(rule, ctx, ["EA-A"], 25)  # EA-QUIET sends nothing at all: offline, a matter for AlarmOffline
    assert [s.device_id for s in rule.on_tick(ctx, T0 + 24 * H + 1)] == ["EA-A"]
    assert rule.on_tick(ctx, T0 + 24 * H + 2) == []
    rule.on_reading(reading(heartbeat(T0 + 26 * H), "EA-QUIET"), ctx, T0 + 26 * H)  # heard again, still no activity
    (s,) = rule.on_tick(ctx, T0 + 26 * H + 1)
    assert s.device_id == "EA-QUIET" and "26 小时" in s.detail


def test_a_network_outage_is_no_storm_of_welfare_checks():
    ids = [f"EA-{i:04d}" for i in range(500)]
    rule, ctx = Inactivity(), Ctx(places=homes(*ids))
    rule.on_tick(ctx, T0)
    beating(rule, ctx, ids, 2)  # then the network goes: no heartbeats, no activity, for two days
    assert [s for h in range(3, 48) for s in rule.on_tick(ctx, T0 + h * H)] == []


# --- offline ----------------------------------------------------------------------------------------------

HOLD = 300 * S
LIMIT = 3 * H


def test_a_silent_one_touch_alarm_is_offline_high_after_three_heartbeats():
    rule, ctx = AlarmOffline(), Ctx(places=homes("EA-A", "EA-B"))
    rule.on_tick(ctx, T0)
    rule.on_reading(reading(heartbeat(T0 + H), "EA-A"), ctx, T0 + H)
    assert rule.on_tick(ctx, T0 + LIMIT + 1) == []  # EA-B overdue: held a storm window
    (s,) = rule.on_tick(ctx, T0 + LIMIT + 1 + HOLD)
    assert (s.device_id, s.condition, s.category, s.severity) == ("EA-B", "offline", "maintenance", Severity.HIGH)
    assert "老人按下呼叫将无人知晓" in s.detail


def test_many_one_touch_alarms_silent_at_once_are_one_street_incident():
    ids = [f"EA-{i:04d}" for i in range(40)]
    rule, ctx = AlarmOffline(), Ctx(places=homes(*ids))
    rule.on_tick(ctx, T0)
    (storm,) = rule.on_tick(ctx, T0 + LIMIT + 1)  # more than storm_count (20) at once
    assert (storm.key, storm.severity, len(storm.members)) == ("street:wanli:mass_offline", Severity.HIGH, 40)
    assert [s for t in range(1, 20) for s in rule.on_tick(ctx, T0 + LIMIT + t * 60 * S)] == []
