"""Group incidents and stand-downs as pure functions: members follow their group's end, split, merge; the cancel
notice a station gets; a cancelled dispatch that no deadline catches, across a restart too."""

import json
from dataclasses import replace

import pytest

from alerts.escalation import STAND_DOWN_ROLE, stand_down_notices
from alerts.incidents import (
    Action,
    Severity,
    Signal,
    State,
    follow_group,
    members_of,
    merge_into,
    open_or_update,
    split_member,
    transition,
)
from alerts.rules.base import Place
from devices.hierarchy import Location, load_hierarchy
from devices.kinds.fire_station import contract as fs
from devices.kinds.fire_station.rules import DispatchResponse
from devices.reading import Reading
from tests.support.rules import RuleWorld
from foundation.errors import IllegalTransition, Invalid

LOC = Location("wanli", "万里街道", building_id="xq-01", building="香泉 1号楼", floor=3, unit="0301")
T0 = 1_795_000_000_000


def alarm(device, new_id):
    signal = Signal(device, "smoke_detector", "smoke_alarm", "fire", Severity.HIGH, "烟感报警", T0, "")
    return open_or_update(None, signal, LOC, T0, new_id)[0]


def fire(members=("SD-1", "SD-2")):
    signal = Signal("SD-1", "smoke_detector", "suspected_fire", "fire", Severity.CRITICAL, "疑似火灾", T0, "",
                    scope="building:xq-01", members=members)
    return open_or_update(None, signal, LOC, T0, "inc_fire")[0]


def test_a_group_carries_the_active_alarms_of_its_devices_and_nothing_else():
    group = fire()
    one, two, other = alarm("SD-1", "inc_1"), alarm("SD-2", "inc_2"), alarm("SD-9", "inc_9")
    ended = transition(alarm("SD-2", "inc_old"), Action.FALSE_ALARM, "op", "", T0)[0]
    assert [i.id for i in members_of(group, [one, two, other, ended, group])] == ["inc_1", "inc_2"]
    assert members_of(one, [two]) == []  # a single alarm carries nothing


def test_a_member_follows_its_group_to_its_end_its_climb_stops_and_the_trail_says_why():
    group = transition(fire(), Action.FALSE_ALARM, "值班员 王芳", "厨房油烟", T0 + 5000)[0]
    member = replace(alarm("SD-1", "inc_1"), next_deadline_ms=T0 + 60_000)  # climbing
    followed, entry = follow_group(member, group, "值班员 王芳", T0 + 5000)
    assert (followed.state, followed.next_deadline_ms, followed.closed_ms) == (State.FALSE_ALARM, None, T0 + 5000)
    assert (entry.action, entry.from_state, entry.to_state, entry.actor) == ("follow_group", State.OPEN,
                                                                              State.FALSE_ALARM, "值班员 王芳")
    assert "inc_fire" in entry.note and "升级停止" in entry.note
    assert follow_group(followed, group, "x", T0 + 6000) is None  # already ended
    assert follow_group(member, fire(), "x", T0) is None  # the group is still open: nothing to follow


def test_split_takes_a_device_out_and_refuses_a_stranger_or_an_ended_group():
    group, entry = split_member(fire(), "SD-2", "op", T0 + 1)
    assert group.members == ("SD-1",) and entry.action == "split" and "SD-2" in entry.note
    with pytest.raises(Invalid):
        split_member(group, "SD-9", "op", T0 + 2)
    with pytest.raises(IllegalTransition):
        split_member(transition(fire(), Action.FALSE_ALARM, "op", "", T0)[0], "SD-1", "op", T0 + 2)


def test_merge_only_into_an_active_group_which_then_carries_the_device():
    source = alarm("SD-3", "inc_3")
    merged, bigger, trail = merge_into(source, fire(), "op", "同一火情", T0 + 1)
    assert merged.state is State.MERGED and "SD-3" in bigger.members and bigger.event_count == 2
    assert [e.action for e in trail] == ["merge", "merge_in"]
    with pytest.raises(Invalid):
        merge_into(source, alarm("SD-4", "inc_4"), "op", "", T0)  # not a group
    with pytest.raises(Invalid):
        merge_into(fire(), fire(), "op", "", T0)  # itself


def test_the_stand_down_goes_to_the_station_s_duty_topic_and_says_why():
    ended = transition(alarm("SD-1", "inc_1"), Action.FALSE_ALARM, "op", "", T0)[0]
    (notice,) = stand_down_notices(ended, "inc_1-0", "MFS-XQ", load_hierarchy(), T0)
    assert (notice.topic, notice.role, notice.dispatch_id, notice.step) == (
        "dispatch/v1/wanli/fire_station/MFS-XQ/duty", STAND_DOWN_ROLE, "", 0)
    body = json.loads(notice.payload)
    assert (body["type"], body["dispatch_id"], body["state"]) == ("dispatch_cancel", "inc_1-0", "false_alarm")
    assert "误报" in body["reason"] and notice.name == "香泉微型消防站" and notice.phone


def test_a_cancelled_dispatch_raises_no_breach_and_stays_cancelled_across_a_restart():
    ctx = RuleWorld([DispatchResponse], [Place("MFS-XQ", "fire_station", "xq-01", None, "")])
    rule = DispatchResponse()
    rule.expect_dispatch("inc_1-0", "MFS-XQ", "inc_1", T0)
    assert rule.open_dispatches("inc_1") == [("inc_1-0", "MFS-XQ")]
    rule.cancel_dispatch("inc_1-0", T0 + 10_000)
    assert rule.open_dispatches("inc_1") == []
    again = DispatchResponse()
    again.restore(json.loads(json.dumps(rule.snapshot())))
    assert again.on_tick(ctx, T0 + 10 * 60_000) == []
    late = fs.DispatchAck(v=1, ts=T0 + 11 * 60_000, seq=1, dispatch_id="inc_1-0")
    assert again.on_reading(Reading("wanli", "fire_station", "MFS-XQ", late.CLASS, late, late.ts), ctx, late.ts) == []
    (row,) = again.response_times()
    assert row["cancelled_ms"] == T0 + 10_000 and row["ack_s"] is None
