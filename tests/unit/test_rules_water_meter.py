from functools import partial

from hypothesis import given
from hypothesis import strategies as st

from alerts.incidents import Severity
from alerts.rules import default_rules
from alerts.rules.base import Place
from devices.kinds.water_meter import contract as wm
from devices.kinds.water_meter.rules import RULES, Leak, LowWaterUse, MeterOffline
from devices.messages import Offline
from tests.support.rules import rule_context, run_rule

T0 = 1_772_352_000_000  # 2026-03-01 08:00 UTC
H = 3_600_000
KIND = "water_meter"


Ctx = partial(rule_context, RULES)  # Ctx(places=…, overrides={device_id: {threshold: value}})

def meter_reading(end_ms, litres, interval_s=3600):
    return wm.Reading(v=1, ts=end_ms, seq=1, total_l=1000.0, interval_l=litres, interval_s=interval_s)


def hourly(litres_per_hour, start_ms=T0):
    """One reading an hour, each for the hour before it."""
    return [meter_reading(start_ms + (k + 1) * H, litres) for k, litres in enumerate(litres_per_hour)]


def run(rule, ctx, *messages, device="WM-1"):
    return run_rule(rule, ctx, KIND, device, messages)


def test_the_rules_are_registered():
    assert {type(r) for r in default_rules()} >= set(RULES)


def test_nothing_is_judged_before_the_window_is_covered():
    rule, ctx = LowWaterUse(), Ctx()
    assert run(rule, ctx, *hourly([0.0] * 11)) == []  # eleven hours of nothing is not yet twelve
    (s,) = run(rule, ctx, *hourly([0.0], start_ms=T0 + 11 * H))
    assert (s.condition, s.category, s.severity) == ("low_water_use", "welfare", Severity.HIGH)
    assert s.detail.startswith("独居老人家中12小时几乎未用水，请上门查看") and "0.0 升" in s.detail


def test_the_litres_boundary_is_strictly_below():
    assert run(LowWaterUse(), Ctx(), *hourly([2.5, 2.5] + [0.0] * 10)) == []  # exactly 5 litres: enough
    assert len(run(LowWaterUse(), Ctx(), *hourly([0.4] * 12))) == 1  # 4.8 litres


def test_ordinary_use_is_quiet():
    day = [0, 0, 0, 0, 0, 0, 12, 30, 5, 2, 8, 20, 3, 0, 10, 4, 6, 15, 25, 8, 2, 0, 0, 0]
    assert run(LowWaterUse(), Ctx(), *hourly(day)) == []


def test_a_morning_shower_carries_until_it_leaves_the_window():
    rule, ctx = LowWaterUse(), Ctx()
    assert run(rule, ctx, *hourly([50] + [0.1] * 11)) == []
    assert len(run(rule, ctx, *hourly([0.1], start_ms=T0 + 12 * H))) == 1  # the shower is 13 hours ago now


def test_a_long_first_interval_covers_the_window_at_once():
    (s,) = run(LowWaterUse(), Ctx(), meter_reading(T0 + 24 * H, 2.0, interval_s=24 * 3600))
    assert "1.0 升" in s.detail  # half of the interval's litres fall in the last twelve hours


def test_missing_readings_leave_the_window_uncovered():
    gappy = [meter_reading(T0 + 2 * k * H, 0.0) for k in range(1, 13)]  # one hour reported out of every two
    assert run(LowWaterUse(), Ctx(), *gappy) == []


def test_a_device_override_of_the_limit_and_the_window():
    ctx = Ctx(overrides={"WM-BIG": {"low_use_litres": 20}, "WM-SHORT": {"low_use_window_h": 6}})
    assert run(LowWaterUse(), ctx, *hourly([1.0] * 12), device="WM-BIG") != []
    assert run(LowWaterUse(), ctx, *hourly([1.0] * 12), device="WM-1") == []
    (s,) = run(LowWaterUse(), ctx, *hourly([0.1] * 6), device="WM-SHORT")
    assert s.detail.startswith("独居老人家中6小时几乎未用水")


def test_meters_are_judged_separately():
    rule, ctx = LowWaterUse(), Ctx()
    run(rule, ctx, *hourly([0.0] * 6), device="WM-A")
    assert run(rule, ctx, *hourly([0.0] * 6, start_ms=T0 + 6 * H), device="WM-B") == []


@given(st.lists(st.floats(0, 3), min_size=1, max_size=30))
def test_raised_exactly_when_the_last_twelve_hourly_readings_sum_below_the_limit(litres):
    rule, ctx = LowWaterUse(), Ctx()
    for k, m in enumerate(hourly(litres)):
        raised = run(rule, ctx, m) != []
        used = sum(litres[max(0, k - 11): k + 1])
        if abs(used - 5) > 1e-9:  # leave float rounding at the very boundary aside
            assert raised == (k >= 11 and used < 5)


def test_a_leak_is_a_maintenance_warning():
    (s,) = run(Leak(), Ctx(), wm.Leak(v=1, ts=T0, seq=1, flow_l_per_min=2.5, duration_s=5400))
    assert (s.condition, s.category, s.severity) == ("leak", "maintenance", Severity.WARNING)
    assert "90 分钟" in s.detail and "2.5 升/分钟" in s.detail


# --- offline ----------------------------------------------------------------------------------------------
# A meter reads hourly; silent for three hours it is overdue, held storm_window_s (300 s), then offline.

S = 1000
HOLD = 300 * S
LIMIT = 3 * H


def homes(*ids):
    return [Place(d, KIND, "xq-01", 3, "0301") for d in ids]


def test_the_offline_limit_is_three_of_the_kinds_own_heartbeats():
    assert MeterOffline.HEARTBEAT_MS == wm.KIND.heartbeat_s * 1000 == H


def test_a_silent_meter_is_offline_after_three_hourly_readings_missed():
    rule, ctx = MeterOffline(), Ctx(places=homes("WM-A", "WM-B"))
    rule.on_tick(ctx, T0)
    run(rule, ctx, meter_reading(T0 + H, 2.0), device="WM-A")
    assert rule.on_tick(ctx, T0 + LIMIT) == []  # exactly three hours: not yet
    assert rule.on_tick(ctx, T0 + LIMIT + 1) == []  # WM-B overdue: held a storm window
    (s,) = rule.on_tick(ctx, T0 + LIMIT + 1 + HOLD)
    assert (s.device_id, s.condition, s.category, s.severity) == ("WM-B", "offline", "maintenance", Severity.WARNING)
    assert "智能水表" in s.detail and "长时间不用水" in s.detail
    assert rule.on_tick(ctx, T0 + H + LIMIT + 1) == []  # WM-A, heard an hour later, is held in its turn
    (a,) = rule.on_tick(ctx, T0 + H + LIMIT + 1 + HOLD)
    assert a.device_id == "WM-A"


def test_a_meter_reading_again_is_not_offline_and_the_last_will_is_no_sign_of_life():
    rule, ctx = MeterOffline(), Ctx(places=homes("WM-A", "WM-B"))
    rule.on_tick(ctx, T0)
    went = []
    for h in range(1, 6):
        run(rule, ctx, meter_reading(T0 + h * H, 1.0), device="WM-A")
        if h == 2:
            run(rule, ctx, Offline(v=1, ts=T0 + h * H, seq=1), device="WM-B")  # the broker speaking for a lost link
        went += [s.device_id for t in (0, HOLD) for s in rule.on_tick(ctx, T0 + h * H + t)]
    assert went == ["WM-B"]  # at three hours' silence (plus the hold), once; WM-A never


def test_many_meters_silent_at_once_are_one_street_incident():
    ids = [f"WM-{i:04d}" for i in range(40)]
    rule, ctx = MeterOffline(), Ctx(places=homes(*ids))
    rule.on_tick(ctx, T0)
    (storm,) = rule.on_tick(ctx, T0 + LIMIT + 1)  # more than storm_count (20) at once
    assert (storm.key, storm.severity, len(storm.members)) == ("street:wanli:mass_offline", Severity.HIGH, 40)
    assert "40 个智能水表相继失联" in storm.detail
    assert [s for t in range(1, 20) for s in rule.on_tick(ctx, T0 + LIMIT + t * 60 * S)] == []
