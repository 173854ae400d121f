"""The combustible-gas detector, a kind added as one folder (devices/kinds/gas_detector/) and one line."""

from functools import partial

import pytest

from alerts.incidents import Severity, open_or_update
from alerts.rules import default_rules
from alerts.rules.base import Place
from devices.catalog import KINDS
from devices.hierarchy import Location
from devices.kinds import SLICES
from devices.kinds.gas_detector import contract as gd
from devices.kinds.gas_detector.rules import RULES, DetectorFault, GasDetectorOffline, GasLeak, ValveNotClosed
from devices.kinds.gas_detector.simulator import GasDetectorSim
from devices.topics import MessageClass
from simulators.devices import SIMULATORS
from simulators.expectations import CONDITION_ZH, DEVICE_ZH, KIND_ZH
from simulators.scenarios import scenarios
from tests.support.rules import rule_context, run_rule
from foundation.errors import PayloadError

T0 = 1_772_352_000_000
KIND = "gas_detector"
DEV = "GD-FP01-0302"
Ctx = partial(rule_context, RULES)
KITCHENS = [Place(DEV, KIND, "fp-01", 3, "0302"), Place("GD-FP01-0301", KIND, "fp-01", 3, "0301")]


def alarm(level, lel, ts=T0):
    return gd.GasAlarm(v=1, ts=ts, seq=1, level=level, lel_pct=lel)


def beat(lel, valve="open", ts=T0):
    return gd.Heartbeat(v=1, ts=ts, seq=1, lel_pct=lel, valve=valve)


def valve(state, ts=T0):
    return gd.Valve(v=1, ts=ts, seq=1, state=state)


def run(rule, messages, ctx=None, now_ms=None):
    return run_rule(rule, ctx or Ctx(places=KITCHENS), KIND, DEV, messages, now_ms)


# -- the slice: registered once, everything derived ----------------------------------------------------------------


def test_one_registration_makes_it_known_everywhere():
    assert KINDS[KIND] is gd.KIND and SLICES[KIND].kind is gd.KIND
    assert SIMULATORS[KIND] is GasDetectorSim
    assert {type(r) for r in default_rules()} >= set(RULES)
    assert KIND_ZH[KIND] == "燃气探测器" and DEVICE_ZH["GD"] == "燃气探测器"
    assert CONDITION_ZH["gas_leak"] == "可燃气体泄漏" and CONDITION_ZH["valve_not_closed"] == "燃气切断阀未关闭"
    assert "kitchen_gas_leak" in scenarios()
    assert [r.name for r in default_rules() if isinstance(r, GasLeak)] == ["gas_detector.GasLeak"]


def test_the_contract_decodes_a_reading_and_refuses_an_impossible_one():
    msg = KINDS[KIND].decode(MessageClass.EVENT, b'{"v":1,"ts":1,"seq":2,"type":"gas_alarm","level":"high","lel_pct":51.2}')
    assert isinstance(msg, gd.GasAlarm) and (msg.level, msg.lel_pct) == ("high", 51.2)
    with pytest.raises(PayloadError) as err:
        KINDS[KIND].decode(MessageClass.TELEMETRY, b'{"v":1,"ts":1,"seq":2,"type":"heartbeat","lel_pct":140}')
    assert err.value.reason == "invalid_field"
    with pytest.raises(PayloadError) as err:
        KINDS[KIND].decode(MessageClass.EVENT, b'{"v":1,"ts":1,"seq":2,"type":"valve","state":"half"}')
    assert err.value.reason == "invalid_field"


# -- the leak ------------------------------------------------------------------------------------------------------


def test_a_low_alarm_is_a_high_fire_incident_and_the_high_one_raises_it_to_critical():
    (low,) = run(GasLeak(), [alarm("low", 26.0)])
    assert (low.condition, low.category, low.severity) == ("gas_leak", "fire", Severity.HIGH)
    assert "26%LEL" in low.detail and "切断阀" in low.detail
    (high,) = run(GasLeak(), [alarm("high", 51.0, ts=T0 + 40_000)])
    assert high.severity is Severity.CRITICAL and high.key == low.key
    loc = Location("wanli", "万里街道", building_id="fp-01")
    first, _ = open_or_update(None, low, loc, T0, "inc_1")
    raised, _ = open_or_update(first, high, loc, T0 + 40_000, "inc_2")
    assert raised.id == first.id and raised.severity is Severity.CRITICAL


def test_a_heartbeat_over_the_services_own_set_point_raises_the_leak_the_detector_did_not():
    assert run(GasLeak(), [beat(19.9)]) == []
    (s,) = run(GasLeak(), [beat(20.0)])
    assert s.severity is Severity.HIGH and "心跳读数" in s.detail
    (s,) = run(GasLeak(), [beat(55.0)])
    assert s.severity is Severity.CRITICAL


def test_the_detectors_own_low_alarm_counts_even_under_the_services_set_point_and_a_building_may_be_stricter():
    (s,) = run(GasLeak(), [alarm("low", 12.0)])
    assert s.severity is Severity.HIGH
    ctx = Ctx(places=KITCHENS, overrides={DEV: {"high_alarm_lel_pct": 30.0}})
    (s,) = run(GasLeak(), [alarm("low", 31.0)], ctx=ctx)
    assert s.severity is Severity.CRITICAL


# -- the valve -----------------------------------------------------------------------------------------------------


def test_a_valve_that_closes_in_time_raises_nothing():
    rule, ctx = ValveNotClosed(), Ctx(places=KITCHENS)
    assert run(rule, [alarm("low", 26.0), valve("closed", ts=T0 + 4_000)], ctx=ctx) == []
    assert rule.on_tick(ctx, T0 + 60_000) == []


def test_the_high_alarm_after_the_valve_closed_waits_for_nothing_but_the_next_leak_does():
    rule, ctx = ValveNotClosed(), Ctx(places=KITCHENS)
    run(rule, [alarm("low", 26.0), valve("closed", ts=T0 + 4_000), alarm("high", 51.0, ts=T0 + 40_000)], ctx=ctx,
        now_ms=T0)
    assert rule.on_tick(ctx, T0 + 120_000) == []
    cleared = gd.GasCleared(v=1, ts=T0 + 600_000, seq=1, lel_pct=4.0)
    run(rule, [cleared, alarm("low", 27.0, ts=T0 + 900_000)], ctx=ctx, now_ms=T0 + 900_000)
    (s,) = rule.on_tick(ctx, T0 + 930_000)
    assert s.condition == "valve_not_closed"


def test_a_valve_that_stays_silent_past_its_time_is_critical_once():
    rule, ctx = ValveNotClosed(), Ctx(places=KITCHENS)
    run(rule, [alarm("low", 26.0), alarm("high", 51.0, ts=T0 + 10_000)], ctx=ctx, now_ms=T0)
    assert rule.on_tick(ctx, T0 + 29_999) == []
    (s,) = rule.on_tick(ctx, T0 + 30_000)
    assert (s.device_id, s.condition, s.category, s.severity) == (DEV, "valve_not_closed", "fire", Severity.CRITICAL)
    assert "30 秒内切断阀未反馈关闭" in s.detail and "总阀" in s.detail
    assert rule.on_tick(ctx, T0 + 90_000) == []


def test_a_failed_valve_is_critical_at_once_and_a_detector_without_a_valve_is_not_waited_for():
    (s,) = run(ValveNotClosed(), [alarm("low", 26.0), valve("failed", ts=T0 + 3_000)])
    assert s.condition == "valve_not_closed" and "关闭失败" in s.detail
    rule, ctx = ValveNotClosed(), Ctx(places=KITCHENS)
    run(rule, [beat(0.5, valve="none"), alarm("low", 26.0)], ctx=ctx, now_ms=T0)
    assert rule.on_tick(ctx, T0 + 60_000) == []


def test_the_wait_for_the_valve_survives_a_restart_and_is_written_at_once():
    rule, ctx = ValveNotClosed(), Ctx(places=KITCHENS)
    assert rule.persist_at_once and not rule.changed
    run(rule, [alarm("low", 26.0)], ctx=ctx, now_ms=T0)
    assert rule.changed  # the engine writes its snapshot after this batch, not at the next checkpoint
    again = ValveNotClosed()
    again.restore(rule.snapshot() or {})
    (s,) = again.on_tick(ctx, T0 + 31_000)
    assert s.condition == "valve_not_closed"


def test_a_fault_is_maintenance_and_silence_is_offline_after_three_heartbeats():
    (s,) = run(DetectorFault(), [gd.Fault(v=1, ts=T0, seq=1, code="E21", detail="sensor past its service life")])
    assert (s.condition, s.category, s.severity) == ("fault", "maintenance", Severity.WARNING)
    assert GasDetectorOffline.HEARTBEAT_MS == gd.KIND.heartbeat_s * 1000 == 30 * 60_000


# -- the simulator -------------------------------------------------------------------------------------------------


def test_the_simulated_leak_alarms_low_then_high_the_valve_closes_then_the_gas_clears():
    sim = GasDetectorSim(DEV, seed=1)
    sim.start(T0, announce=False)
    sim.leak(T0, peak_lel_pct=60.0, rise_s=90.0, aired_after_s=480.0)
    sent = sim.tick(T0 + 600_000)
    events = [(p[0].rsplit("/", 1)[1], KINDS[KIND].decode(MessageClass(p[0].rsplit("/", 1)[1]), p[1])) for p in sent]
    kinds_of = [m.type for cls, m in events if cls == "event"]
    assert kinds_of == ["gas_alarm", "valve", "gas_alarm", "gas_cleared"]
    alarms = [m for _, m in events if isinstance(m, gd.GasAlarm)]
    assert [a.level for a in alarms] == ["low", "high"] and 25 <= alarms[0].lel_pct < 28 <= 50 <= alarms[1].lel_pct
    (v,) = [m for _, m in events if isinstance(m, gd.Valve)]
    assert v.state == "closed" and alarms[0].ts < v.ts <= alarms[0].ts + 6_000
    assert sim.valve == "closed"


def test_a_small_leak_under_the_set_point_alarms_nothing_and_a_broken_valve_says_failed():
    quiet = GasDetectorSim(DEV, seed=2)
    quiet.leak(T0, peak_lel_pct=15.0)
    assert [p for p in quiet.tick(T0 + 900_000) if p[0].endswith("/event")] == []
    broken = GasDetectorSim(DEV, seed=3)
    broken.leak(T0, peak_lel_pct=30.0, valve_works=False)
    types = [KINDS[KIND].decode(MessageClass.EVENT, p[1]) for p in broken.tick(T0 + 900_000) if p[0].endswith("/event")]
    assert [(m.type, getattr(m, "state", "")) for m in types] == [("gas_alarm", ""), ("valve", "failed"),
                                                                   ("gas_cleared", "")]
