import time
from functools import partial

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from alerts.incidents import Severity
from alerts.rules import default_rules
from alerts.rules.base import Place
from devices.kinds.charging_station import contract as cs
from devices.kinds.charging_station.rules import (
    RULES,
    MainsPower,
    PortConditions,
    ShedSmoke,
    StationOffline,
    ThermalRunaway,
    temperature_slopes,
)
from devices.messages import Offline, Online
from tests.support.readings import reading as support_reading
from tests.support.rules import rule_context, run_rule

T0 = 1_772_352_000_000  # 2026-03-01 08:00 UTC
MIN = 60_000
KIND = "charging_station"


Ctx = partial(rule_context, RULES)  # Ctx(places=…, overrides={device_id: {threshold: value}})

def stations(n):
    return [Place(f"CS-{i:04d}", KIND, f"b-{i % 477:03d}", None, "") for i in range(n)]


def reading(message, device="CS-1"):
    return support_reading(KIND, message, device)


def port(n, state="charging", temp=None, current=0.0, power=0.0, session=0):
    return cs.Port(port=n, state=state, temperature_c=temp, current_a=current, power_w=power, session_s=session)


def status(ts, *ports, mains=True, seq=1):
    return cs.StationStatus(v=1, ts=ts, seq=seq, ports=list(ports), mains_power=mains)


def run(rule, ctx, *messages, device="CS-1"):
    return run_rule(rule, ctx, KIND, device, messages)


def test_the_rules_are_registered():
    assert {type(r) for r in default_rules()} >= set(RULES)


def test_shed_smoke_is_a_critical_fire():
    (s,) = run(ShedSmoke(), Ctx(), cs.SmokeDetected(v=1, ts=T0, seq=1))
    assert (s.condition, s.category, s.severity) == ("shed_smoke", "fire", Severity.CRITICAL)


# --- port conditions -------------------------------------------------------------------------------------

def test_a_hot_port_is_an_overheat_of_that_port_only():
    (s,) = run(PortConditions(), Ctx(), status(T0, port(3, temp=61.5, power=300), port(5, temp=40)))
    assert (s.condition, s.category, s.severity, s.key) == ("port_overheat:3", "charging", Severity.HIGH,
                                                             "CS-1:port_overheat:3")
    assert "第 3 号口温度 61.5 °C，超过 60 °C" in s.detail and "充电中" in s.detail


def test_overheat_boundary_is_strictly_over_the_threshold():
    assert run(PortConditions(), Ctx(), status(T0, port(1, temp=60.0))) == []
    assert [s.condition for s in run(PortConditions(), Ctx(), status(T0, port(1, temp=60.1)))] == ["port_overheat:1"]


def test_a_device_override_lowers_its_own_overheat_threshold_only():
    ctx = Ctx(overrides={"CS-STRICT": {"port_temp_c": 50}})
    assert [s.condition for s in run(PortConditions(), ctx, status(T0, port(1, temp=55)), device="CS-STRICT")] == [
        "port_overheat:1"]
    assert run(PortConditions(), ctx, status(T0, port(1, temp=55)), device="CS-OTHER") == []


def test_an_overcurrent_event_names_its_port():
    (s,) = run(PortConditions(), Ctx(), cs.Overcurrent(v=1, ts=T0, seq=1, port=4, current_a=14.2))
    assert (s.condition, s.category, s.severity) == ("overcurrent:4", "charging", Severity.HIGH)
    assert "14.2 A" in s.detail


def test_telemetry_current_over_the_limit_is_an_overcurrent():
    assert run(PortConditions(), Ctx(), status(T0, port(2, current=10.0))) == []
    (s,) = run(PortConditions(), Ctx(), status(T0, port(2, current=10.5)))
    assert s.condition == "overcurrent:2" and "超过 10 A" in s.detail


def test_power_into_a_full_battery_is_a_warning():
    (s,) = run(PortConditions(), Ctx(), status(T0, port(6, state="full", power=25)))
    assert (s.condition, s.category, s.severity) == ("charging_full:6", "charging", Severity.WARNING)
    assert run(PortConditions(), Ctx(), status(T0, port(6, state="full", power=20))) == []  # trickle is fine
    assert run(PortConditions(), Ctx(), status(T0, port(6, state="charging", power=200))) == []


def test_a_session_longer_than_ten_hours_is_a_warning():
    ten_h = 10 * 3600
    assert run(PortConditions(), Ctx(), status(T0, port(1, session=ten_h))) == []
    (s,) = run(PortConditions(), Ctx(), status(T0, port(1, session=ten_h + 1)))
    assert (s.condition, s.severity) == ("session_too_long:1", Severity.WARNING)
    assert run(PortConditions(), Ctx(), status(T0, port(1, state="idle", session=ten_h + 1))) == []


def test_power_lost_by_event_or_by_status():
    (s,) = run(MainsPower(), Ctx(), cs.PowerLost(v=1, ts=T0, seq=1))
    assert (s.condition, s.category, s.severity) == ("power_lost", "maintenance", Severity.WARNING)
    assert [s.key for s in run(MainsPower(), Ctx(), status(T0, mains=False))] == ["CS-1:power_lost"]
    assert run(MainsPower(), Ctx(), cs.PowerRestored(v=1, ts=T0, seq=1), status(T0)) == []


# --- thermal runaway --------------------------------------------------------------------------------------

def rising(rate_c_per_min, minutes, start_c=30.0, noise=(), every_s=60, port_no=2):
    noise = list(noise) or [0.0]
    return [status(T0 + k * every_s * 1000, port(port_no, temp=start_c + rate_c_per_min * k * every_s / 60
                                                  + noise[k % len(noise)]), seq=k)
            for k in range(int(minutes * 60 / every_s) + 1)]


def test_a_steady_one_degree_a_minute_is_normal_charging():
    assert run(ThermalRunaway(), Ctx(), *rising(1.0, 10)) == []


def test_three_degrees_a_minute_is_thermal_runaway_from_the_third_sample():
    rule, ctx = ThermalRunaway(), Ctx()
    samples = rising(3.0, 5)
    assert run(rule, ctx, *samples[:2]) == []  # two points make a line, not a trend
    (s,) = run(rule, ctx, samples[2])
    assert (s.condition, s.category, s.severity, s.key) == ("thermal_runaway:2", "fire", Severity.CRITICAL,
                                                             "CS-1:thermal_runaway:2")
    assert "3.0 °C/分钟" in s.detail and "当前 36.0 °C" in s.detail


def test_noise_of_half_a_degree_neither_hides_nor_invents_a_runaway():
    zigzag = (-0.5, 0.5, -0.5, 0.5, 0.0)
    assert run(ThermalRunaway(), Ctx(), *rising(1.0, 10, noise=zigzag)) == []
    assert len(run(ThermalRunaway(), Ctx(), *rising(3.0, 5, noise=zigzag))) >= 1


def test_just_under_and_just_over_the_rate():
    assert run(ThermalRunaway(), Ctx(), *rising(1.99, 5)) == []
    assert run(ThermalRunaway(), Ctx(), *rising(2.01, 5)) != []


def test_a_burst_of_snapshots_seconds_apart_is_not_a_trend():
    burst = rising(6.0, 10 / 60, every_s=5)  # 3 samples over 10 s: +0.5 °C each, sensor resolution
    assert run(ThermalRunaway(), Ctx(), *burst) == []


def test_a_rise_that_stopped_leaves_the_window():
    rule, ctx = ThermalRunaway(), Ctx()
    early = rising(3.0, 2)  # raises while it climbs
    assert run(rule, ctx, *early) != []
    flat = [status(T0 + (10 + k) * MIN, port(2, temp=36.0), seq=10 + k) for k in range(5)]
    assert run(rule, ctx, *flat) == []


def test_a_device_override_makes_a_slow_rise_a_runaway():
    ctx = Ctx(overrides={"CS-OLD": {"rise_c_per_min": 0.5}})
    assert run(ThermalRunaway(), ctx, *rising(1.0, 5), device="CS-OLD") != []
    assert run(ThermalRunaway(), ctx, *rising(1.0, 5), device="CS-NEW") == []


def test_ports_are_judged_separately():
    msgs = [status(T0 + k * MIN, port(1, temp=30 + 3 * k), port(2, temp=30 + 0.5 * k), port(3), seq=k)
            for k in range(4)]
    assert {s.condition for s in run(ThermalRunaway(), Ctx(), *msgs)} == {"thermal_runaway:1"}


def test_slopes_need_three_samples_per_port():
    t = [0, MIN, 2 * MIN]
    slopes = temperature_slopes(t, [[30, 30], [31, np.nan], [32, 40]])
    assert slopes[0] == 1.0 and np.isnan(slopes[1])


@given(
    slope=st.floats(-5, 10),
    intercept=st.floats(-20, 200),
    noise=st.lists(st.floats(-1, 1), min_size=3, max_size=30),
    step_s=st.integers(5, 120),
)
def test_the_slope_estimator_recovers_a_line_within_its_noise(slope, intercept, noise, step_s):
    t = np.arange(len(noise)) * step_s * 1000
    x = t / 60_000
    (estimate,) = temperature_slopes(t, intercept + slope * x + np.array(noise))
    dx = x - x.mean()
    bound = max(abs(n) for n in noise) * np.abs(dx).sum() / (dx * dx).sum()  # least squares with bounded noise
    assert abs(estimate - slope) <= bound + 1e-6


@given(rate=st.floats(0, 1.5), noise=st.lists(st.floats(-0.2, 0.2), min_size=6, max_size=6))
def test_a_slow_noisy_rise_never_raises(rate, noise):
    assert run(ThermalRunaway(), Ctx(), *rising(rate, 10, noise=noise)) == []


@given(rate=st.floats(2.5, 20), noise=st.lists(st.floats(-0.2, 0.2), min_size=6, max_size=6))
def test_a_fast_noisy_rise_always_raises(rate, noise):
    assert run(ThermalRunaway(), Ctx(), *rising(rate, 2, noise=noise)) != []


# --- offline ---------------------------------------------------------------------------------------------
# A silent station is held storm_window_s (120 s) to see whether many go at once, then offline on its own.

HOLD = 120_000


def offline(rule, ctx, now):
    """Tick at ``now`` (the station goes overdue, held) and once the hold is over: who went offline."""
    assert rule.on_tick(ctx, now) == []
    return [s.device_id for s in rule.on_tick(ctx, now + HOLD)]


def test_offline_after_three_missed_heartbeats_counting_never_seen_from_the_first_tick():
    rule, ctx = StationOffline(), Ctx(places=[Place(d, KIND, "xq-01", None, "") for d in ("CS-A", "CS-B")])
    assert rule.on_tick(ctx, T0) == []
    rule.on_reading(reading(status(T0 + MIN), "CS-A"), ctx, T0 + MIN)
    assert rule.on_tick(ctx, T0 + 3 * MIN) == []  # exactly three heartbeats: not yet
    assert rule.on_tick(ctx, T0 + 3 * MIN + 1) == []  # overdue: held
    (s,) = rule.on_tick(ctx, T0 + 3 * MIN + 1 + HOLD)
    assert (s.device_id, s.condition, s.category, s.severity) == ("CS-B", "offline", "maintenance", Severity.WARNING)
    assert "自告警引擎开始监视" in s.detail and "烟雾与过热监测失效" in s.detail
    assert rule.on_tick(ctx, T0 + 3 * MIN + 2 + HOLD) == []  # once per silence; CS-A, silent since T0 + 4 min, held
    assert [s.device_id for s in rule.on_tick(ctx, T0 + 3 * MIN + 2 + 2 * HOLD)] == ["CS-A"]


def test_a_station_that_comes_back_and_falls_silent_again_is_offline_again():
    rule, ctx = StationOffline(), Ctx(places=[Place("CS-A", KIND, "xq-01", None, "")])
    rule.on_tick(ctx, T0)
    assert offline(rule, ctx, T0 + 4 * MIN) == ["CS-A"]
    rule.on_reading(reading(status(T0 + 7 * MIN), "CS-A"), ctx, T0 + 7 * MIN)
    assert rule.on_tick(ctx, T0 + 8 * MIN) == []
    assert offline(rule, ctx, T0 + 11 * MIN) == ["CS-A"]


def test_the_brokers_last_will_is_not_a_sign_of_life_but_online_is():
    rule, ctx = StationOffline(), Ctx(places=[Place(d, KIND, "xq-01", None, "") for d in ("CS-A", "CS-B")])
    rule.on_tick(ctx, T0)
    rule.on_reading(reading(Offline(v=1, ts=T0 + 2 * MIN, seq=1), "CS-A"), ctx, T0 + 2 * MIN)
    rule.on_reading(reading(Online(v=1, ts=T0 + 2 * MIN, seq=1), "CS-B"), ctx, T0 + 2 * MIN)
    assert offline(rule, ctx, T0 + 3 * MIN + 1) == ["CS-A"]


def test_readings_before_the_first_tick_count_and_late_registrations_count_from_their_first_tick():
    rule = StationOffline()
    ctx = Ctx(places=[Place("CS-A", KIND, "xq-01", None, "")])
    rule.on_reading(reading(status(T0 + MIN), "CS-A"), ctx, T0 + MIN)
    rule.on_tick(ctx, T0 + 2 * MIN)  # the first tick; CS-A was seen a minute ago
    ctx.places["CS-NEW"] = Place("CS-NEW", KIND, "xq-01", None, "")
    assert rule.on_tick(ctx, T0 + 3 * MIN + 1) == []  # the refresh a minute on sees CS-NEW
    assert offline(rule, ctx, T0 + 4 * MIN + 1) == ["CS-A"]
    assert offline(rule, ctx, T0 + 6 * MIN + 2) == ["CS-NEW"]


def test_a_retired_station_is_no_longer_watched():
    rule, ctx = StationOffline(), Ctx(places=[Place(d, KIND, "xq-01", None, "") for d in ("CS-A", "CS-B")])
    rule.on_tick(ctx, T0)
    del ctx.places["CS-B"]
    assert offline(rule, ctx, T0 + 10 * MIN) == ["CS-A"]


def test_a_device_override_gives_a_station_more_heartbeats():
    ctx = Ctx(places=[Place(d, KIND, "xq-01", None, "") for d in ("CS-A", "CS-B")],
              overrides={"CS-B": {"offline_after_heartbeats": 10}})
    rule = StationOffline()
    rule.on_tick(ctx, T0)
    assert offline(rule, ctx, T0 + 5 * MIN) == ["CS-A"]
    assert offline(rule, ctx, T0 + 10 * MIN + 1) == ["CS-B"]


def test_a_power_cut_silencing_many_stations_is_one_street_incident_that_follows_their_return():
    places = stations(30)
    rule, ctx = StationOffline(), Ctx(places=places)
    rule.on_tick(ctx, T0)
    for p in places:
        rule.on_reading(reading(status(T0 + MIN), p.device_id), ctx, T0 + MIN)
    (storm,) = rule.on_tick(ctx, T0 + 4 * MIN + 1)  # more than storm_count (10) at once: no need to hold
    assert (storm.key, storm.severity, len(storm.members)) == ("street:wanli:mass_offline", Severity.HIGH, 30)
    assert "30 个充电站相继失联" in storm.detail
    assert [s for t in range(2, 30) for s in rule.on_tick(ctx, T0 + 4 * MIN + t * 1000)] == []  # nobody alone
    back = T0 + 10 * MIN
    for p in places[:20]:
        rule.on_reading(reading(status(back), p.device_id), ctx, back)
    (update,) = rule.on_tick(ctx, back + 1)
    assert (update.key, update.update_only, update.severity) == (storm.key, True, Severity.HIGH)
    assert "已有 20 个恢复上报，仍有 10 个离线" in update.detail
    for p in places[20:]:
        rule.on_reading(reading(status(back + 5_000), p.device_id), ctx, back + 5_000)
    (done,) = rule.on_tick(ctx, back + 6_000)  # the last ones back: said at once, not a minute later
    assert (done.key, done.downgrade, done.update_only, done.severity) == (storm.key, True, True, Severity.WARNING)
    assert "已全部恢复上报" in done.detail and "核查后结案" in done.detail
    assert rule.on_tick(ctx, back + 7_000) == []


def test_on_tick_time_with_2000_stations():
    ctx = Ctx(places=stations(2000))
    rule = StationOffline()
    started = time.perf_counter()
    rule.on_tick(ctx, T0)
    first = time.perf_counter() - started
    for i, p in enumerate(ctx.devices(KIND)):
        rule.on_reading(reading(status(T0 + 30_000), p.device_id), ctx, T0 + 30_000 + i)
    runs = 200
    started = time.perf_counter()
    for k in range(runs):
        assert rule.on_tick(ctx, T0 + 60_000 + k * 500) == []
    steady = (time.perf_counter() - started) / runs
    started = time.perf_counter()
    (storm,) = rule.on_tick(ctx, T0 + 10 * MIN)
    took = time.perf_counter() - started
    assert storm.condition == "mass_offline" and len(storm.members) == 2000  # one incident, not 2000 pages
    print(f"\nStationOffline.on_tick, 2000 stations: first {first * 1e3:.2f} ms, steady {steady * 1e3:.3f} ms, "
          f"all offline at once {took * 1e3:.2f} ms")
