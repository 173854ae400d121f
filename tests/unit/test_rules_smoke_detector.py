"""Smoke detector rules with a fake clock: each call is handed its ``now_ms``."""

import statistics
import time
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.incidents import Severity, open_or_update
from alerts.rules import default_rules
from alerts.rules.base import Place
from alerts.thresholds import Thresholds
from devices.hierarchy import Location
from devices.kinds.smoke_detector import contract as sd
from devices.kinds.smoke_detector.rules import (
    RULES,
    AlarmFlapping,
    DetectorMaintenance,
    DetectorSilence,
    SmokeAlarm,
    SuspectedFire,
)
from devices.messages import Offline, Online
from tests.support.readings import reading as support_reading
from tests.support.rules import RuleWorld

T0 = 1_795_000_000_000
S, MIN, H = 1000, 60_000, 3_600_000
KIND = "smoke_detector"
LIMIT = 3 * 4 * H  # offline_after_heartbeats × the 4-hour heartbeat
HOLD = 300 * S  # storm_window_s: how long an overdue detector waits to see whether a storm forms

PLACES = [
    Place("SD-XQ01-0101", KIND, "xq-01", 1, "0101"),
    Place("SD-XQ01-0301", KIND, "xq-01", 3, "0301"),
    Place("SD-XQ01-0302", KIND, "xq-01", 3, "0302"),
    Place("SD-XQ01-0402", KIND, "xq-01", 4, "0402"),
    Place("SD-XQ01-1001", KIND, "xq-01", 10, "1001"),
    Place("SD-XQ01-B101", KIND, "xq-01", -1, "B101"),
    Place("SD-XQ02-0301", KIND, "xq-02", 3, "0301"),
]


Ctx = partial(RuleWorld, RULES, places=PLACES)  # Ctx(places=…, overrides=…) as in WANLI_THRESHOLDS_FILE

def detectors(n, prefix="SD"):
    return [Place(f"{prefix}-{i:05d}", KIND, f"b-{i % 477:03d}", 1 + i % 30, f"{1 + i % 30:02d}01") for i in range(n)]


def reading(message, device, street="wanli"):
    return support_reading(KIND, message, device, street=street)


def alarm(ts):
    return sd.Alarm(v=1, ts=ts, seq=0)


def cleared(ts):
    return sd.AlarmCleared(v=1, ts=ts, seq=0)


def heartbeat(ts, battery=90.0):
    return sd.Heartbeat(v=1, ts=ts, seq=0, battery_pct=battery, rssi_dbm=-80)


def feed(rule, ctx, *steps, street="wanli"):
    """(device, message) steps, each at the message's own time; every signal the rule says."""
    return [s for device, m in steps for s in rule.on_reading(reading(m, device, street), ctx, m.ts)]


def test_every_rule_is_registered_and_declares_its_thresholds():
    assert {type(r) for r in default_rules()} >= set(RULES)
    defaults = Thresholds(RULES, lambda d: "").defaults()[KIND]
    assert defaults == {"correlation_window_s": 180, "adjacent_floors": 1, "low_battery_pct": 20, "silence_count": 3,
                        "silence_window_s": 86_400, "flap_count": 4, "flap_window_s": 600,
                        "offline_after_heartbeats": 3, "storm_count": 50, "storm_window_s": 300}


# -- alarm and suspected fire -----------------------------------------------------------------------------------------


def test_an_alarm_opens_a_device_fire_incident():
    (s,) = feed(SmokeAlarm(), Ctx(), ("SD-XQ01-0301", sd.Alarm(v=1, ts=T0, seq=1, smoke_density=0.3)))
    assert (s.key, s.category, s.severity, s.at_ms) == ("SD-XQ01-0301:smoke_alarm", "fire", Severity.HIGH, T0)
    assert "0.3" in s.detail


def test_two_detectors_on_adjacent_floors_within_the_window_are_a_suspected_fire_for_the_building():
    rule = SuspectedFire()
    assert feed(rule, Ctx(), ("SD-XQ01-0301", alarm(T0))) == []
    (s,) = feed(rule, Ctx(), ("SD-XQ01-0402", alarm(T0 + 40 * S)))
    assert (s.key, s.scope, s.category, s.severity) == ("building:xq-01:suspected_fire", "building:xq-01", "fire",
                                                        Severity.CRITICAL)
    assert s.members == ("SD-XQ01-0301", "SD-XQ01-0402") and s.at_ms == T0 + 40 * S
    assert "相邻楼层" in s.title
    assert "3层 0301（SD-XQ01-0301）、4层 0402（SD-XQ01-0402），两个探测器 40 秒内相继报警" in s.detail
    assert "烟气可能正在蔓延" in s.detail


def test_the_same_building_is_enough_and_the_detail_says_the_floors_are_apart():
    rule = SuspectedFire()
    (s,) = feed(rule, Ctx(), ("SD-XQ01-0301", alarm(T0)), ("SD-XQ01-1001", alarm(T0 + 100 * S)))
    assert s.severity is Severity.CRITICAL and s.members == ("SD-XQ01-0301", "SD-XQ01-1001")
    assert "同一楼栋" in s.title and "不像单户厨房油烟误报" in s.detail and "相邻" not in s.detail


def test_basement_one_is_right_below_the_first_floor():
    (s,) = feed(SuspectedFire(), Ctx(), ("SD-XQ01-B101", alarm(T0)), ("SD-XQ01-0101", alarm(T0 + S)))
    assert "相邻楼层" in s.title and "地下1层 B101" in s.detail


def test_two_alarms_from_the_same_detector_are_not_a_suspected_fire():
    assert feed(SuspectedFire(), Ctx(), *[("SD-XQ01-0301", alarm(T0 + i * S)) for i in range(5)]) == []


def test_detectors_in_different_buildings_are_not_a_suspected_fire():
    assert feed(SuspectedFire(), Ctx(), ("SD-XQ01-0301", alarm(T0)), ("SD-XQ02-0301", alarm(T0 + S))) == []


@pytest.mark.parametrize(("apart_s", "fire"), [(180, True), (181, False), (-180, True), (-181, False)])
def test_the_correlation_window_is_inclusive_and_runs_on_the_detectors_time_in_either_order(apart_s, fire):
    signals = feed(SuspectedFire(), Ctx(), ("SD-XQ01-0301", alarm(T0)), ("SD-XQ01-0402", alarm(T0 + apart_s * S)))
    assert bool(signals) is fire


def test_unregistered_detectors_still_alarm_but_are_not_correlated():
    steps = [("SD-UNKNOWN-1", alarm(T0)), ("SD-UNKNOWN-2", alarm(T0 + S))]
    assert feed(SuspectedFire(), Ctx(), *steps) == []
    assert len(feed(SmokeAlarm(), Ctx(), *steps)) == 2


def test_further_alarms_in_the_window_add_members_to_the_one_building_incident():
    rule, ctx = SuspectedFire(), Ctx()
    signals = feed(rule, ctx, ("SD-XQ01-0301", alarm(T0)), ("SD-XQ01-0402", alarm(T0 + 30 * S)),
                   ("SD-XQ01-0302", alarm(T0 + 60 * S)))
    assert [s.members for s in signals] == [("SD-XQ01-0301", "SD-XQ01-0402"),
                                            ("SD-XQ01-0301", "SD-XQ01-0302", "SD-XQ01-0402")]
    assert "，3 个探测器 60 秒内相继报警" in signals[-1].detail
    incident = None
    for s in signals:
        incident, _ = open_or_update(incident, s, Location("wanli", "万里街道"), s.at_ms, "inc_1")
    assert incident.members == ("SD-XQ01-0301", "SD-XQ01-0302", "SD-XQ01-0402") and incident.event_count == 2
    assert "3 个探测器" in incident.detail


def test_a_fire_through_many_floors_names_the_first_alarms_and_gathers_every_detector():
    tower = [Place(f"SD-T-{f:02d}01", KIND, "t-01", f, f"{f:02d}01") for f in range(1, 21)]
    rule, ctx = SuspectedFire(), Ctx(places=tower)
    signals = feed(rule, ctx, *[(p.device_id, alarm(T0 + i * 5 * S)) for i, p in enumerate(tower)])
    assert len(signals[-1].members) == 20 and signals[-1].detail.count("（SD-T-") == 12
    assert "等，20 个探测器 95 秒内相继报警" in signals[-1].detail


def test_a_building_override_widens_the_correlation_window():
    steps = [("SD-XQ01-0301", alarm(T0)), ("SD-XQ01-0402", alarm(T0 + 400 * S))]
    assert feed(SuspectedFire(), Ctx(), *steps) == []
    wider = Ctx(overrides={"buildings": {"xq-01": {KIND: {"correlation_window_s": 600}}}})
    assert len(feed(SuspectedFire(), wider, *steps)) == 1


def test_a_device_override_of_adjacent_floors_changes_what_counts_as_adjacent():
    steps = [("SD-XQ01-0301", alarm(T0)), ("SD-XQ01-1001", alarm(T0 + S))]
    (s,) = feed(SuspectedFire(), Ctx(overrides={"devices": {"SD-XQ01-1001": {"adjacent_floors": 7}}}), *steps)
    assert "相邻楼层" in s.title


@given(st.lists(st.tuples(st.sampled_from(["alarm", "clear", "silenced"]), st.integers(0, 3 * H)), max_size=60))
def test_any_sequence_from_one_detector_never_makes_a_suspected_fire(events):
    rule, ctx = SuspectedFire(), Ctx()
    make = {"alarm": alarm, "clear": cleared, "silenced": lambda ts: sd.Silenced(v=1, ts=ts, seq=0)}
    for i, (what, dt) in enumerate(events):
        assert feed(rule, ctx, ("SD-XQ01-0301", make[what](T0 + dt))) == []
        if i % 10 == 0:
            rule.on_tick(ctx, T0 + dt)


@given(st.integers(-600, 600), st.sampled_from(["SD-XQ01-0402", "SD-XQ01-1001", "SD-XQ01-B101"]))
def test_two_detectors_of_a_building_are_a_suspected_fire_exactly_when_within_the_window(apart_s, other):
    signals = feed(SuspectedFire(), Ctx(), ("SD-XQ01-0301", alarm(T0)), (other, alarm(T0 + apart_s * S)))
    assert bool(signals) is (abs(apart_s) <= 180)


# -- a cleared alarm ---------------------------------------------------------------------------------------------------


def test_a_cleared_alarm_raises_nothing_and_closes_nothing():
    rules, ctx = [rule() for rule in RULES], Ctx()
    raised = [s for rule in rules for s in feed(rule, ctx, ("SD-XQ01-0301", alarm(T0)))]
    assert [s.condition for s in raised] == ["smoke_alarm"]
    assert [s for rule in rules for s in feed(rule, ctx, ("SD-XQ01-0301", cleared(T0 + 30 * S)))] == []
    assert [s for rule in rules for s in rule.on_tick(ctx, T0 + 60 * S)] == []


# -- maintenance ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("message", "condition", "severity", "says"), [
    (sd.Fault(v=1, ts=T0, seq=0, code="E07", detail="传感器污染"), "fault", Severity.WARNING, "E07：传感器污染"),
    (sd.LowBattery(v=1, ts=T0, seq=0, battery_pct=8), "low_battery", Severity.WARNING, "8%"),
    (heartbeat(T0, battery=15), "low_battery", Severity.WARNING, "低于 20%"),
    (sd.Tamper(v=1, ts=T0, seq=0, state="removed"), "tamper", Severity.HIGH, "保护不了任何人"),
    (sd.SelfTest(v=1, ts=T0, seq=0, result="fail"), "self_test_failed", Severity.WARNING, "自检未通过"),
])
def test_what_a_detector_says_about_itself_becomes_a_maintenance_incident(message, condition, severity, says):
    (s,) = feed(DetectorMaintenance(), Ctx(), ("SD-XQ01-0301", message))
    assert (s.key, s.category, s.severity, s.at_ms) == (f"SD-XQ01-0301:{condition}", "maintenance", severity, T0)
    assert says in s.detail


@pytest.mark.parametrize("message", [
    heartbeat(T0, battery=20), sd.Tamper(v=1, ts=T0, seq=0, state="restored"), sd.SelfTest(v=1, ts=T0, seq=0, result="pass"),
    Online(v=1, ts=T0, seq=0), sd.Silenced(v=1, ts=T0, seq=0),
])
def test_good_news_and_a_single_mute_raise_nothing(message):
    assert feed(DetectorMaintenance(), Ctx(), ("SD-XQ01-0301", message)) == []


def test_a_device_override_raises_the_low_battery_threshold():
    ctx = Ctx(overrides={"devices": {"SD-XQ01-0301": {"low_battery_pct": 40}}})
    assert len(feed(DetectorMaintenance(), ctx, ("SD-XQ01-0301", heartbeat(T0, battery=35)))) == 1
    assert feed(DetectorMaintenance(), ctx, ("SD-XQ01-0402", heartbeat(T0, battery=35))) == []


def silenced(ts):
    return sd.Silenced(v=1, ts=ts, seq=0, duration_s=60)


def test_muting_a_detector_again_and_again_within_a_day_is_reported_once_it_reaches_the_count():
    rule, ctx = DetectorMaintenance(), Ctx()
    assert feed(rule, ctx, ("SD-XQ01-0301", silenced(T0)), ("SD-XQ01-0301", silenced(T0 + 5 * H))) == []
    (s,) = feed(rule, ctx, ("SD-XQ01-0301", silenced(T0 + 23 * H)))
    assert (s.key, s.category, s.severity) == ("SD-XQ01-0301:repeated_silencing", "maintenance", Severity.WARNING)
    assert "24 小时内被消音 3 次" in s.detail
    assert len(feed(rule, ctx, ("SD-XQ01-0301", silenced(T0 + 23 * H + MIN)))) == 1  # the same incident counts on


def test_mutes_spread_over_more_than_the_window_and_mutes_of_different_detectors_raise_nothing():
    rule, ctx = DetectorMaintenance(), Ctx()
    assert feed(rule, ctx, *[("SD-XQ01-0301", silenced(T0 + i * 13 * H)) for i in range(5)]) == []
    assert feed(rule, ctx, *[(d, silenced(T0 + i * MIN)) for i, d in enumerate(["SD-XQ01-0402", "SD-XQ01-1001",
                                                                                 "SD-XQ01-0101"])]) == []


def test_a_device_override_lowers_the_silence_count():
    ctx = Ctx(overrides={"devices": {"SD-XQ01-0301": {"silence_count": 2}}})
    assert len(feed(DetectorMaintenance(), ctx, ("SD-XQ01-0301", silenced(T0)), ("SD-XQ01-0301", silenced(T0 + H)))) == 1


# -- flapping ----------------------------------------------------------------------------------------------------------


def toggles(device, n, start=T0, every=30 * S):
    return [(device, (alarm if i % 2 == 0 else cleared)(start + i * every)) for i in range(n)]


def test_more_than_four_switches_in_ten_minutes_is_one_flapping_incident_that_counts_on():
    rule, ctx = AlarmFlapping(), Ctx()
    assert feed(rule, ctx, *toggles("SD-XQ01-0301", 4)) == []
    (s,) = feed(rule, ctx, ("SD-XQ01-0301", alarm(T0 + 4 * 30 * S)))
    assert (s.key, s.category, s.severity) == ("SD-XQ01-0301:flapping", "maintenance", Severity.WARNING)
    assert "10 分钟内报警与消警切换 5 次" in s.detail
    more = feed(rule, ctx, ("SD-XQ01-0301", cleared(T0 + 5 * 30 * S)), ("SD-XQ01-0301", alarm(T0 + 6 * 30 * S)))
    incident = None
    for signal in [s, *more]:
        incident, _ = open_or_update(incident, signal, Location("wanli", "万里街道"), signal.at_ms, "inc_1")
    assert incident.key == "SD-XQ01-0301:flapping" and incident.event_count == 3


def test_repeated_alarms_without_a_clear_and_clears_without_an_alarm_are_no_switches():
    rule, ctx = AlarmFlapping(), Ctx()
    assert feed(rule, ctx, *[("SD-XQ01-0301", cleared(T0 + i * S)) for i in range(10)]) == []
    assert feed(rule, ctx, *[("SD-XQ01-0301", alarm(T0 + MIN + i * S)) for i in range(10)]) == []


def test_switches_spread_over_more_than_the_window_are_no_flapping():
    assert feed(AlarmFlapping(), Ctx(), *toggles("SD-XQ01-0301", 12, every=200 * S)) == []


def test_a_device_override_of_the_flap_count():
    ctx = Ctx(overrides={"devices": {"SD-XQ01-0301": {"flap_count": 2}}})
    assert len(feed(AlarmFlapping(), ctx, *toggles("SD-XQ01-0301", 3))) == 1
    assert feed(AlarmFlapping(), ctx, *toggles("SD-XQ01-0402", 3)) == []


# -- silence: dead-man and storm -------------------------------------------------------------------------------------


def tick(rule, ctx, now):
    return rule.on_tick(ctx, now)


def heard(rule, ctx, device, now, street="wanli", message=None):
    return rule.on_reading(reading(message or heartbeat(now), device, street), ctx, now)


def test_a_detector_is_offline_only_after_more_than_three_heartbeats_of_silence():
    rule, ctx = DetectorSilence(), Ctx()
    tick(rule, ctx, T0)
    for p in PLACES:
        heard(rule, ctx, p.device_id, T0 + 2 * H)  # everyone else keeps reporting below
    last = T0 + 3 * H
    heard(rule, ctx, "SD-XQ01-0301", last)
    for p in PLACES:
        if p.device_id != "SD-XQ01-0301":
            heard(rule, ctx, p.device_id, last + LIMIT - H)
    assert tick(rule, ctx, last + LIMIT) == []  # exactly three heartbeats: not yet
    assert tick(rule, ctx, last + LIMIT + 1) == []  # overdue: held to see whether a storm forms
    assert tick(rule, ctx, last + LIMIT + 1 + HOLD - 1) == []
    (s,) = tick(rule, ctx, last + LIMIT + 1 + HOLD)
    assert (s.key, s.category, s.severity) == ("SD-XQ01-0301:offline", "maintenance", Severity.WARNING)
    assert "已 12.1 小时没有任何上报" in s.detail and "超过 3 个周期" in s.detail
    assert tick(rule, ctx, last + LIMIT + 2 * HOLD) == []  # once per silence


def test_detectors_never_heard_from_count_from_the_first_tick_not_from_the_epoch():
    rule, ctx = DetectorSilence(), Ctx(places=PLACES[:1])
    assert tick(rule, ctx, T0) == []  # the engine just started: nobody is paged
    assert tick(rule, ctx, T0 + LIMIT) == []
    assert tick(rule, ctx, T0 + LIMIT + 1) == []
    (s,) = tick(rule, ctx, T0 + LIMIT + 1 + HOLD)
    assert s.device_id == PLACES[0].device_id and "自告警引擎开始监视" in s.detail


def test_a_reading_before_the_first_tick_counts_as_a_sign_of_life():
    rule, ctx = DetectorSilence(), Ctx(places=PLACES[:1])
    heard(rule, ctx, PLACES[0].device_id, T0 - S)
    tick(rule, ctx, T0)
    tick(rule, ctx, T0 + LIMIT + 1)
    (s,) = tick(rule, ctx, T0 + LIMIT + 1 + HOLD)
    assert "自告警引擎" not in s.detail and "已 " in s.detail


def test_a_detector_that_reports_again_is_no_longer_offline():
    rule, ctx = DetectorSilence(), Ctx(places=PLACES[:2])
    a, b = PLACES[0].device_id, PLACES[1].device_id
    tick(rule, ctx, T0)
    tick(rule, ctx, T0 + LIMIT + 1)  # both overdue, held
    heard(rule, ctx, a, T0 + LIMIT + 2 * MIN)  # a comes back while held: never reported
    assert [s.device_id for s in tick(rule, ctx, T0 + LIMIT + 1 + HOLD)] == [b]
    back = T0 + LIMIT + HOLD + H
    heard(rule, ctx, b, back)  # b comes back after being reported
    assert tick(rule, ctx, back + 1) == []
    assert tick(rule, ctx, back + LIMIT) == []  # counted from its return, not from before
    tick(rule, ctx, back + LIMIT + 1)
    assert [s.device_id for s in tick(rule, ctx, back + LIMIT + 1 + HOLD)] == [a, b]


def test_the_brokers_last_will_is_not_a_sign_of_life():
    rule, ctx = DetectorSilence(), Ctx(places=PLACES[:1])
    tick(rule, ctx, T0)
    heard(rule, ctx, PLACES[0].device_id, T0 + LIMIT, message=Offline(v=1, ts=T0 + LIMIT, seq=0))
    tick(rule, ctx, T0 + LIMIT + 1)
    assert len(tick(rule, ctx, T0 + LIMIT + 1 + HOLD)) == 1


def test_a_device_override_shortens_the_offline_limit():
    ctx = Ctx(places=PLACES[:2], overrides={"devices": {PLACES[0].device_id: {"offline_after_heartbeats": 1}}})
    rule = DetectorSilence()
    tick(rule, ctx, T0)
    tick(rule, ctx, T0 + 4 * H + 1)
    assert [s.device_id for s in tick(rule, ctx, T0 + 4 * H + 1 + HOLD)] == [PLACES[0].device_id]


def test_the_population_follows_the_registry_newcomers_count_from_when_they_appear_and_the_retired_are_forgotten():
    places = detectors(3)
    ctx = Ctx(places=places[:2])
    rule = DetectorSilence()
    tick(rule, ctx, T0)
    ctx.places = {p.device_id: p for p in places[1:]}  # the first retired, a third registered
    tick(rule, ctx, T0 + 2 * H)  # the next refresh sees it
    tick(rule, ctx, T0 + LIMIT + 1)
    assert [s.device_id for s in tick(rule, ctx, T0 + LIMIT + 1 + HOLD)] == [places[1].device_id]
    tick(rule, ctx, T0 + 2 * H + LIMIT + MIN)
    assert [s.device_id for s in tick(rule, ctx, T0 + 2 * H + LIMIT + MIN + HOLD)] == [places[2].device_id]


def silent_street(n, street="wanli", spread_s=0):
    """n detectors heard from once (spread over spread_s seconds), then silent; the rule at its first tick."""
    places = detectors(n)
    rule, ctx = DetectorSilence(), Ctx(places=places)
    tick(rule, ctx, T0)
    for i, p in enumerate(places):
        heard(rule, ctx, p.device_id, T0 + H + (i * spread_s * S) // max(n, 1), street)
    return rule, ctx, places


def test_a_storm_of_silence_is_one_street_incident_instead_of_one_per_detector():
    rule, ctx, places = silent_street(51)
    (s,) = tick(rule, ctx, T0 + H + LIMIT + 1)  # at once: no need to wait for a storm that is already here
    assert (s.key, s.scope, s.category, s.severity) == ("street:wanli:mass_offline", "street:wanli", "maintenance",
                                                        Severity.HIGH)
    assert s.members == tuple(p.device_id for p in places)
    assert "51 个烟感探测器相继失联" in s.detail
    assert [x for t in range(1, 20) for x in tick(rule, ctx, T0 + H + LIMIT + t * MIN)] == []  # nobody paged alone


def test_fifty_silent_detectors_are_no_storm_each_is_offline_on_its_own():
    rule, ctx, places = silent_street(50)
    assert tick(rule, ctx, T0 + H + LIMIT + 1) == []
    signals = tick(rule, ctx, T0 + H + LIMIT + 1 + HOLD)
    assert sorted(s.device_id for s in signals) == [p.device_id for p in places]
    assert {s.condition for s in signals} == {"offline"}


def test_an_outage_is_one_storm_from_the_first_overdue_detector_though_the_rest_go_overdue_over_four_hours():
    # A network outage: 200 detectors stop at once, but their last heartbeats lie spread over the 4-hour interval, so
    # they go overdue one every 72 s — never 51 within five minutes. The late ones (already missing heartbeats) show it.
    rule, ctx, places = silent_street(200, street="changzheng", spread_s=4 * 3600)
    first = T0 + H + LIMIT + 1
    (s,) = tick(rule, ctx, first)
    assert (s.condition, s.scope, s.members) == ("mass_offline", "street:changzheng", (places[0].device_id,))
    assert "1 个烟感探测器相继失联，另有 100 个已错过多次心跳、即将超时" in s.detail
    signals = [x for t in range(1, 4 * 60 + 10) for x in tick(rule, ctx, first + t * MIN)]
    assert {x.condition for x in signals} == {"mass_offline"}  # the rest join it; nobody is paged alone
    assert sorted(m for x in [s, *signals] for m in x.members) == [p.device_id for p in places]
    assert "200 个烟感探测器相继失联" in signals[-1].detail


def test_detectors_going_overdue_together_form_the_storm_when_the_51st_goes_within_five_minutes():
    rule, ctx = DetectorSilence(), Ctx(places=detectors(80))
    signals = [s for t in range(0, LIMIT // S + 2 * 300, 5) for s in tick(rule, ctx, T0 + t * S)]  # never heard from
    assert [(s.condition, len(s.members)) for s in signals] == [("mass_offline", 80)]


def test_detectors_that_missed_a_single_heartbeat_are_not_late_and_make_no_storm():
    # A street where everyone reports every four hours, 100 detectors lost their last heartbeat packet (silent for
    # 1.5 to 2.5 heartbeats), and one detector is dead: that one is paged on its own.
    places = detectors(1000)
    rule, ctx = DetectorSilence(), Ctx(places=places)
    tick(rule, ctx, T0)
    dead, lossy = places[0].device_id, {p.device_id for p in places[1:101]}
    for beat in range(4):
        for i, p in enumerate(places):
            at = T0 + beat * 4 * H + i * (4 * H // 1000)
            if p.device_id != dead and not (beat == 3 and p.device_id in lossy):
                heard(rule, ctx, p.device_id, at)
    due = T0 + LIMIT + 1
    assert tick(rule, ctx, due) == []
    (s,) = tick(rule, ctx, due + HOLD)
    assert (s.device_id, s.condition) == (dead, "offline")


def test_many_late_detectors_make_the_first_overdue_one_a_storm_at_once():
    places = detectors(61)
    rule, ctx = DetectorSilence(), Ctx(places=places)
    tick(rule, ctx, T0)
    heard(rule, ctx, places[0].device_id, T0 + H)
    for p in places[1:]:
        heard(rule, ctx, p.device_id, T0 + H + 90 * MIN)  # 60 more silent since, 10.5 h later each 1.5 h from its limit
    (s,) = tick(rule, ctx, T0 + H + LIMIT + 1)
    assert (s.condition, s.members) == ("mass_offline", (places[0].device_id,))
    assert "另有 60 个已错过多次心跳" in s.detail


def test_detectors_that_come_back_after_a_storm_are_online_again():
    rule, ctx, places = silent_street(60)
    assert len(tick(rule, ctx, T0 + H + LIMIT + 1)) == 1
    back = T0 + H + LIMIT + H
    for p in places[:59]:  # the network returns for all but the last
        heard(rule, ctx, p.device_id, back)
    (update,) = tick(rule, ctx, back + 1)  # the storm incident hears who is back
    assert (update.key, update.update_only, update.severity) == ("street:wanli:mass_offline", True, Severity.HIGH)
    assert "60 个烟感探测器中已有 59 个恢复上报，仍有 1 个离线" in update.detail
    for beat in (back + 4 * H, back + 8 * H, back + 12 * H):  # they report again; places[0] stops after its return
        for p in places[1:59]:
            heard(rule, ctx, p.device_id, beat)
        assert tick(rule, ctx, beat) == []  # nothing new to tell
    assert tick(rule, ctx, back + LIMIT + 1) == []
    (s,) = tick(rule, ctx, back + LIMIT + 1 + HOLD)  # alone this time, long after the storm: offline on its own
    assert (s.device_id, s.condition) == (places[0].device_id, "offline")
    heard(rule, ctx, places[59].device_id, back + 13 * H)  # the last one of the storm is back
    (done,) = tick(rule, ctx, back + 13 * H + 1)
    assert (done.key, done.downgrade, done.update_only, done.severity) == ("street:wanli:mass_offline", True, True,
                                                                         Severity.WARNING)
    assert "60 个烟感探测器已全部恢复上报" in done.detail


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 6 * H)), max_size=40),
       st.lists(st.integers(0, 20 * H), max_size=40))
def test_a_detector_is_reported_offline_only_after_its_silence_and_once_per_silence(beats, ticks):
    places = detectors(4)
    rule, ctx = DetectorSilence(), Ctx(places=places)
    tick(rule, ctx, T0)
    last = {p.device_id: T0 for p in places}
    reported = set()
    events = sorted([(T0 + t, "beat", d) for d, t in beats] + [(T0 + t, "tick", -1) for t in ticks])
    for now, what, d in events + [(T0 + 30 * H, "tick", -1), (T0 + 30 * H + HOLD, "tick", -1)]:
        if what == "beat":
            device = places[d].device_id
            heard(rule, ctx, device, now)
            last[device] = now
            reported.discard(device)
            continue
        for s in tick(rule, ctx, now):
            assert s.condition == "offline" and s.device_id not in reported
            assert now - last[s.device_id] > LIMIT + HOLD
            reported.add(s.device_id)
    assert reported == set(last)  # in the end every one of them was silent long enough


# -- bounded state and speed -----------------------------------------------------------------------------------------


def test_what_outlives_its_window_is_forgotten():
    ctx = Ctx(places=detectors(200))
    fire, maintenance, flapping = SuspectedFire(), DetectorMaintenance(), AlarmFlapping()
    for i, p in enumerate(ctx.places.values()):
        steps = [(p.device_id, alarm(T0 + i * S)), (p.device_id, silenced(T0 + i * S)), (p.device_id, cleared(T0 + i * S))]
        for rule in (fire, maintenance, flapping):
            feed(rule, ctx, *steps)
    later = T0 + 2 * 86_400_000
    for rule in (fire, maintenance, flapping):
        rule.on_tick(ctx, later)
    assert (fire._alarms, maintenance._silenced, flapping._switches, flapping._alarming) == ({}, {}, {}, set())


def test_a_tick_over_a_street_of_45000_detectors_is_fast():
    """Prints what ticks cost; the figures go in the report and are not asserted (benchmarks are not tests)."""
    warm, warm_ctx, _ = silent_street(51)  # numpy loads parts of itself on first use: not what a tick costs
    tick(warm, warm_ctx, T0 + H + LIMIT + 1)
    n = 45_000
    places = detectors(n)
    rule, ctx = DetectorSilence(), Ctx(places=places)

    def timed_us(now):
        start = time.perf_counter_ns()
        out = rule.on_tick(ctx, now)
        return (time.perf_counter_ns() - start) / 1000, out

    first_us, _ = timed_us(T0)  # reads the population and every detector's threshold
    start = time.perf_counter_ns()
    for i, p in enumerate(places):  # every detector's heartbeat, spread over four hours
        heard(rule, ctx, p.device_id, T0 + i * (4 * H // n))
    reading_us = (time.perf_counter_ns() - start) / 1000 / n
    now = T0 + 4 * H
    refresh_us, _ = timed_us(now)  # re-reads the population (the thresholds only of new or moved detectors)
    quiet = [timed_us(now + k * S)[0] for k in range(1, 59)]
    timed_us(T0 + LIMIT - 1)  # a refresh, out of the way
    # nobody reports any more: the first deadline passes (one pass over all deadlines) with half the street already
    # late, so the storm forms at once; then about three detectors a second go overdue and join it
    due_us, out = timed_us(T0 + LIMIT + 1)
    assert [s.condition for s in out] == ["mass_offline"]
    outage = [timed_us(T0 + LIMIT + 1 + k * S) for k in range(1, 59)]
    held_us = [us for us, _ in outage]
    assert {s.condition for _, signals in outage for s in signals} == {"mass_offline"}
    print(f"\n45,000 detectors: first tick {first_us / 1000:.1f} ms, on_reading {reading_us:.2f} µs,"
          f" quiet tick median {statistics.median(quiet):.2f} µs (max {max(quiet):.1f} µs),"
          f" refresh tick {refresh_us / 1000:.1f} ms, tick with a deadline passing {due_us:.0f} µs,"
          f" tick during an outage median {statistics.median(held_us):.0f} µs (max {max(held_us):.0f} µs)")
