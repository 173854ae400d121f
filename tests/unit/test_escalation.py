import json

import pytest

from alerts import escalation
from alerts.incidents import Action, Severity, Signal, open_or_update, transition
from devices.hierarchy import load_hierarchy

H = load_hierarchy()
T0 = 1_795_000_000_000


def incident(condition="smoke_alarm", category="fire", severity=Severity.HIGH, building="xq-01", floor=3, unit="0301",
             scope=""):
    signal = Signal("SD-XQ01-0301", "smoke_detector", condition, category, severity, "烟感报警", T0, "why", scope=scope)
    opened, _ = open_or_update(None, signal, H.locate(building, floor, unit), T0, "inc_1")
    return opened


def told(notices):
    return {(n.tier, n.role) for n in notices}


def test_a_smoke_alarm_tells_the_building_first_and_dispatches_the_nearest_station():
    inc, notices, entry = escalation.start(incident(), H, T0)
    assert told(notices) == {("building", "building_leader"), ("community", "property"), ("fire_station", "fire_station_duty")}
    station = next(n for n in notices if n.tier == "fire_station")
    assert station.place_id == "MFS-XQ" and station.dispatch_id == "inc_1-0"
    assert station.topic == "dispatch/v1/wanli/fire_station/MFS-XQ/duty"
    body = json.loads(station.payload)
    assert body["location"] == "香泉居民区 香泉 1号楼 3层 0301室" and body["dispatch_id"] == "inc_1-0"
    assert (inc.escalation_policy, inc.escalation_step, inc.tier) == ("fire", 0, "community")
    assert inc.next_deadline_ms == T0 + 60_000
    assert entry.action == "notify" and "楼组长 李阿姨" in entry.note and "1 分钟内未确认则上报" in entry.note


def test_unacknowledged_it_climbs_a_tier_at_each_deadline_and_stops_at_the_top():
    inc, _, _ = escalation.start(incident(), H, T0)
    assert not escalation.due(inc, T0 + 59_999) and escalation.due(inc, T0 + 60_000)
    tiers_told = []
    now = T0
    for _ in range(6):
        now = inc.next_deadline_ms
        inc, notices, entry = escalation.advance(inc, H, now)
        tiers_told.append(sorted({n.tier for n in notices}))
        assert entry.action == "escalate"
    assert tiers_told[:4] == [["community"], ["area"], ["street"], ["district"]]
    assert tiers_told[4] == tiers_told[5] == ["district"]  # the top repeats, it does not wrap
    assert {n.role for n in notices} >= {"district_ops", "fire_rescue"}


def test_acknowledging_stops_the_climb():
    inc, _, _ = escalation.start(incident(), H, T0)
    acked, _ = transition(inc, Action.ACKNOWLEDGE, "值班员", "", T0 + 30_000)
    assert acked.next_deadline_ms is None and not escalation.due(acked, T0 + 10**9)


def test_a_suspected_fire_reaches_the_street_ops_centre_at_once():
    inc, notices, _ = escalation.start(incident("suspected_fire", severity=Severity.CRITICAL, scope="building:xq-01",
                                                floor=None, unit=""), H, T0)
    assert {"street_ops", "building_leader", "property", "fire_station_duty"} <= {n.role for n in notices}
    assert inc.escalation_policy == "fire-critical" and inc.tier == "street"


def test_an_elderly_press_reaches_the_family_and_community_at_once():
    inc, notices, _ = escalation.start(incident("emergency_press", "welfare", Severity.CRITICAL, floor=6, unit="0601"),
                                       H, T0)
    names = {n.name for n in notices}
    assert "儿子 王强" in names and "社区医生 陈医生" in names and "楼组长 李阿姨" in names
    assert "香泉居委会" in names


def test_a_severity_rise_restarts_at_the_higher_policy():
    inc, _, _ = escalation.start(incident(), H, T0)
    from dataclasses import replace
    risen = replace(inc, severity=Severity.CRITICAL)
    rescaled = escalation.rescale(risen, H, T0 + 5_000)
    assert rescaled is not None and rescaled[0].escalation_policy == "fire-critical"
    assert escalation.rescale(rescaled[0], H, T0 + 6_000) is None  # already there


@pytest.mark.parametrize(("category", "severity", "policy"), [
    ("fire", Severity.WARNING, "fire"), ("maintenance", Severity.WARNING, "maintenance"),
    ("hazard", Severity.INFO, "hazard"), ("welfare", Severity.HIGH, "welfare"), ("unknown", Severity.CRITICAL, "welfare-critical"),
])
def test_every_category_and_severity_has_a_policy(category, severity, policy):
    assert escalation.policy_for(category, severity).name == policy


def test_a_late_station_is_chased_by_people_never_dispatched_again():
    late = incident("dispatch_ack_late:inc_1-0", "fire", Severity.HIGH)
    inc, notices, _ = escalation.start(late, H, T0)
    assert inc.escalation_policy == "response-breach"
    assert not any(n.dispatch_id for n in notices) and "street_ops" in {n.role for n in notices}
