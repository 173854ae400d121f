from datetime import date
from functools import partial

from alerts.incidents import Severity
from alerts.rules import default_rules
from devices.kinds.fire_station.rules import RULES, DispatchResponse, Equipment, Readiness, shanghai_date
from devices.kinds.fire_station import contract as fs
from tests.support.readings import reading as support_reading
from tests.support.rules import rule_context, run_rule

T0 = 1_772_352_000_000  # 2026-03-01 08:00 UTC, 16:00 in Shanghai
S = 1000
KIND = "fire_station"
STATION = "MFS-XQ"


Ctx = partial(rule_context, RULES)  # Ctx(places=…, overrides={device_id: {threshold: value}})

def reading(message, device=STATION):
    return support_reading(KIND, message, device)


def run(rule, ctx, *messages, device=STATION, now_ms=None):
    return run_rule(rule, ctx, KIND, device, messages, now_ms)


def test_the_rules_are_registered():
    assert {type(r) for r in default_rules()} >= set(RULES)


# --- readiness --------------------------------------------------------------------------------------------

def duty(staff, ready=True, ts=T0):
    return fs.DutyStatus(v=1, ts=ts, seq=1, staff_on_duty=staff, ready=ready)


def test_too_few_staff_is_not_ready():
    (s,) = run(Readiness(), Ctx(), duty(2))
    assert (s.condition, s.category, s.severity) == ("not_ready", "readiness", Severity.HIGH)
    assert "在岗 2 人，少于 3 人" in s.detail
    assert run(Readiness(), Ctx(), duty(3)) == []


def test_the_terminal_saying_not_ready_is_not_ready_whatever_the_staff():
    (s,) = run(Readiness(), Ctx(), duty(6, ready=False))
    assert s.condition == "not_ready" and "未就绪" in s.detail


def test_a_shift_change_to_too_few_staff_is_not_ready():
    assert [s.condition for s in run(Readiness(), Ctx(), fs.ShiftChange(v=1, ts=T0, seq=1, staff_on_duty=1))] == [
        "not_ready"]


def test_a_small_station_may_run_with_two():
    ctx = Ctx(overrides={"MFS-SMALL": {"min_staff": 2}})
    assert run(Readiness(), ctx, duty(2), device="MFS-SMALL") == []
    assert run(Readiness(), ctx, duty(2)) != []


# --- equipment --------------------------------------------------------------------------------------------

def check(*items, ts=T0):
    return fs.EquipmentCheck(v=1, ts=ts, seq=1, items=list(items), checked_by="张师傅")


def item(name, status="ok", expires=None, quantity=1):
    return fs.EquipmentItem(item=name, status=status, quantity=quantity, expires_on=expires)


def test_a_complete_check_is_quiet():
    assert run(Equipment(), Ctx(), check(item("extinguisher", expires="2027-01-01"), item("hose"))) == []


def test_missing_and_damaged_items_are_listed():
    (s,) = run(Equipment(), Ctx(), check(item("hose", "missing", quantity=2), item("breathing_set", "damaged"),
                                          item("extinguisher")))
    assert (s.condition, s.category, s.severity) == ("equipment", "maintenance", Severity.WARNING)
    assert "2 项问题" in s.detail and "水带 ×2 缺失" in s.detail and "空气呼吸器 ×1 损坏" in s.detail
    assert "张师傅" in s.detail


def test_an_item_past_its_date_is_expired_by_the_shanghai_calendar():
    late_evening_utc = 1_772_382_600_000  # 2026-03-01 16:30 UTC = 2026-03-02 00:30 in Shanghai
    assert shanghai_date(late_evening_utc) == date(2026, 3, 2)
    (s,) = run(Equipment(), Ctx(), check(item("extinguisher", expires="2026-03-01"), ts=late_evening_utc))
    assert "灭火器 ×1 已过有效期（2026-03-01）" in s.detail
    assert run(Equipment(), Ctx(), check(item("extinguisher", expires="2026-03-02"), ts=late_evening_utc)) == []


def test_an_unknown_item_keeps_its_own_name():
    (s,) = run(Equipment(), Ctx(), check(item("ladder", "missing")))
    assert "ladder ×1 缺失" in s.detail


# --- dispatch response times ------------------------------------------------------------------------------

def step(cls, ts, dispatch_id="D1"):
    return cls(v=1, ts=ts, seq=1, dispatch_id=dispatch_id)


def dispatched(ctx=None):
    rule = DispatchResponse()
    rule.expect_dispatch("D1", STATION, "inc_1", T0)
    return rule, ctx or Ctx()


def test_a_station_on_time_raises_nothing_and_its_times_are_kept():
    rule, ctx = dispatched()
    assert run(rule, ctx, step(fs.DispatchAck, T0 + 45 * S)) == []
    assert rule.on_tick(ctx, T0 + 61 * S) == []
    assert run(rule, ctx, step(fs.DispatchDepart, T0 + 60 * S), step(fs.DispatchOnScene, T0 + 150 * S)) == []
    assert rule.on_tick(ctx, T0 + 200 * S) == []
    (row,) = rule.response_times()
    assert {k: row[k] for k in ("dispatch_id", "station", "incident", "ack_s", "arrive_s", "ack_late",
                                "arrive_late")} == {
        "dispatch_id": "D1", "station": STATION, "incident": "inc_1", "ack_s": 45.0, "arrive_s": 150.0,
        "ack_late": False, "arrive_late": False}


def test_no_acknowledgement_within_a_minute_is_raised_once_from_the_clock():
    rule, ctx = dispatched()
    assert rule.on_tick(ctx, T0 + 60 * S) == []  # exactly a minute: still in time
    (s,) = rule.on_tick(ctx, T0 + 60 * S + 1)
    assert (s.device_id, s.condition, s.category, s.severity) == (STATION, "dispatch_ack_late:D1", "fire",
                                                                  Severity.HIGH)
    assert "微型消防站 MFS-XQ 未在 1 分钟内确认出动" in s.detail and "inc_1" in s.detail
    assert rule.on_tick(ctx, T0 + 61 * S) == []
    assert run(rule, ctx, step(fs.DispatchAck, T0 + 70 * S)) == []  # the late ack adds no second breach
    assert rule.response_times()[0]["ack_s"] == 70.0 and rule.response_times()[0]["ack_late"] is True


def test_not_on_scene_within_three_minutes_is_raised_once():
    rule, ctx = dispatched()
    run(rule, ctx, step(fs.DispatchAck, T0 + 20 * S))
    assert rule.on_tick(ctx, T0 + 180 * S) == []
    (s,) = rule.on_tick(ctx, T0 + 180 * S + 1)
    assert (s.condition, s.severity) == ("dispatch_arrival_late:D1", Severity.HIGH)
    assert "未在 3 分钟内到达现场" in s.detail
    assert rule.on_tick(ctx, T0 + 200 * S) == []
    assert run(rule, ctx, step(fs.DispatchOnScene, T0 + 240 * S)) == []
    row = rule.response_times()[0]
    assert (row["ack_late"], row["arrive_late"], row["arrive_s"]) == (False, True, 240.0)


def test_a_step_stamped_late_by_the_terminal_is_a_breach_even_if_it_arrived_before_the_tick():
    rule, ctx = dispatched()
    (s,) = run(rule, ctx, step(fs.DispatchAck, T0 + 75 * S), now_ms=T0 + 76 * S)
    assert s.condition == "dispatch_ack_late:D1" and "75 秒后才确认" in s.detail


def test_a_terminal_clock_before_the_dispatch_counts_as_an_answer_at_once():
    rule, ctx = dispatched()
    run(rule, ctx, step(fs.DispatchAck, T0 - 30 * S), now_ms=T0 + 5 * S)
    assert rule.response_times()[0]["ack_s"] == 0.0


def test_on_scene_without_an_ack_counts_as_both():
    rule, ctx = dispatched()
    assert run(rule, ctx, step(fs.DispatchOnScene, T0 + 50 * S)) == []
    assert rule.on_tick(ctx, T0 + 300 * S) == []
    row = rule.response_times()[0]
    assert (row["ack_s"], row["arrive_s"]) == (50.0, 50.0)


def test_another_stations_answer_or_an_unknown_dispatch_is_ignored():
    rule, ctx = dispatched()
    assert run(rule, ctx, step(fs.DispatchAck, T0 + 10 * S), device="MFS-YH") == []
    assert run(rule, ctx, step(fs.DispatchAck, T0 + 10 * S, dispatch_id="D-unknown")) == []
    assert [s.condition for s in rule.on_tick(ctx, T0 + 61 * S)] == ["dispatch_ack_late:D1"]


def test_both_deadlines_missed_are_two_breaches():
    rule, ctx = dispatched()
    conditions = [s.condition for t in range(0, 400, 1) for s in rule.on_tick(ctx, T0 + t * S)]
    assert conditions == ["dispatch_ack_late:D1", "dispatch_arrival_late:D1"]
    row = rule.response_times()[0]
    assert (row["ack_s"], row["arrive_s"], row["ack_late"], row["arrive_late"]) == (None, None, True, True)


def test_a_station_with_its_own_deadline():
    rule, ctx = dispatched(Ctx(overrides={STATION: {"ack_within_s": 90}}))
    assert rule.on_tick(ctx, T0 + 80 * S) == []
    (s,) = rule.on_tick(ctx, T0 + 91 * S)
    assert "未在 90 秒内确认出动" in s.detail


def test_expecting_the_same_dispatch_twice_keeps_the_first_time():
    rule, ctx = dispatched()
    rule.expect_dispatch("D1", STATION, "inc_1", T0 + 50 * S)
    assert len(rule.on_tick(ctx, T0 + 61 * S)) == 1


def test_memory_is_bounded_forgetting_finished_dispatches_first(monkeypatch):
    monkeypatch.setattr("devices.kinds.fire_station.rules.MAX_DISPATCHES", 3)
    rule, ctx = DispatchResponse(), Ctx()
    for k in range(3):
        rule.expect_dispatch(f"D{k}", STATION, "inc_1", T0 + k)
    run(rule, ctx, step(fs.DispatchOnScene, T0 + 50 * S, dispatch_id="D1"))
    rule.expect_dispatch("D3", STATION, "inc_1", T0 + 3)
    assert [r["dispatch_id"] for r in rule.response_times()] == ["D0", "D2", "D3"]
    rule.expect_dispatch("D4", STATION, "inc_1", T0 + 4)
    assert [r["dispatch_id"] for r in rule.response_times()] == ["D2", "D3", "D4"]
