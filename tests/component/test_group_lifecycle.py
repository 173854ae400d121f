"""Group incidents and dispatches across their lifecycle, on a real SQLite database and a fake clock.

Closing a suspected fire (a group) takes its member alarms with it and stops their escalation; a member
can be split out; marking an alarm false stands the dispatched micro fire station down (a cancel notice in
the outbox for its duty topic and the webhook) and no "station late" incident climbs afterwards.
"""

import json

import pytest

from alerts.context import RegistryContext
from alerts.escalation import STAND_DOWN_ROLE
from alerts.incidents import Action, State
from alerts.outbox import CHANNEL_MQTT, CHANNEL_WEBHOOK, Outbox
from alerts.rules import default_rules
from alerts.service import AlertService
from alerts.store import IncidentStore
from alerts.thresholds import Thresholds
from devices.hierarchy import load_hierarchy
from devices.kinds.fire_station import contract as fs
from devices.kinds.smoke_detector import contract as sd
from devices.reading import Reading
from devices.registry import DeviceRecord, DeviceRegistry
from foundation.db import create_schema, make_engine
from foundation.errors import Invalid

T0 = 1_795_000_000_000
S, MIN = 1000, 60_000
DETECTORS = [f"SD-XQ01-0{f}01" for f in (3, 4)]


class Street:
    def __init__(self, tmp_path):
        self.engine = make_engine(f"sqlite:///{tmp_path / 'wanli.db'}")
        create_schema(self.engine)
        self.registry = DeviceRegistry(self.engine, load_hierarchy())
        self.incidents = IncidentStore(self.engine)
        rules = default_rules()
        ctx = RegistryContext(self.registry, Thresholds(rules, lambda d: ""))
        self.outbox = Outbox(self.engine, webhook=True)
        self.alerts = AlertService(self.incidents, ctx.locate, ctx, self.registry.hierarchy, rules, self.outbox,
                                   clock_ms=lambda: T0)
        records = [DeviceRecord(d, "smoke_detector", "wanli", "xq-01", f, f"0{f}01") for d, f in zip(DETECTORS, (3, 4))]
        records.append(DeviceRecord("MFS-XQ", "fire_station", "wanli", "xq-01"))
        self.registry.register_many(records, actor="test", now_ms=T0)

    def alarm(self, device, at):
        return self.alerts.handle_batch([Reading("wanli", "smoke_detector", device, sd.Alarm.CLASS,
                                                 sd.Alarm(v=1, ts=at, seq=1), at)], at)

    def active(self, condition):
        return [i for i in self.alerts.active() if i.condition.split(":")[0] == condition]

    def tick_through(self, start, end, every=10 * S):
        for t in range(start, end, every):
            self.alerts.tick(t)

    def close(self):
        self.engine.dispose()


@pytest.fixture
def street(tmp_path):
    s = Street(tmp_path)
    yield s
    s.close()


def suspected_fire(street):
    street.alarm(DETECTORS[0], T0 + S)
    street.alarm(DETECTORS[1], T0 + 2 * S)
    (group,) = street.active("suspected_fire")
    members = street.active("smoke_alarm")
    assert group.members == tuple(DETECTORS) and len(members) == 2
    return group, members


def test_closing_a_suspected_fire_closes_its_member_alarms_and_nothing_climbs_afterwards(street):
    group, members = suspected_fire(street)
    street.alerts.act(group.id, Action.ACKNOWLEDGE, "值班员 王芳", "", T0 + 10 * S)
    street.alerts.act(group.id, Action.RESOLVE, "值班员 王芳", "", T0 + 20 * S)
    for m in members:
        assert street.incidents.get(m.id).state is State.RESOLVED
        assert street.incidents.get(m.id).next_deadline_ms is None  # their escalation stopped
    street.alerts.act(group.id, Action.VERIFY, "值班员 王芳", "现场核查无火情残留", T0 + 30 * S)

    assert {i.id for i in street.alerts.active()}.isdisjoint({group.id, *(m.id for m in members)})
    for m in members:
        closed = street.incidents.get(m.id)
        assert closed.state is State.CLOSED and closed.closed_ms == T0 + 30 * S
        (why,) = [a for a in street.incidents.audit(m.id) if a.action == "follow_group" and a.to_state is State.CLOSED]
        assert group.id in why.note and why.actor == "值班员 王芳" and "升级停止" in why.note
    steps_before = {m.id: street.incidents.get(m.id).escalation_step for m in members}
    street.tick_through(T0 + 40 * S, T0 + 20 * MIN, every=30 * S)  # 20 minutes: the old alarms would have reached the district
    for m in members:
        assert street.incidents.get(m.id).escalation_step == steps_before[m.id]
    assert [i for i in street.alerts.active() if i.condition.startswith("smoke_alarm")] == []


def test_a_member_split_out_stays_open_when_its_group_is_marked_false(street):
    group, members = suspected_fire(street)
    kept = next(m for m in members if m.device_id == DETECTORS[1])
    split = street.alerts.split(group.id, DETECTORS[1], "值班员 王芳", T0 + 5 * S)
    assert split.members == (DETECTORS[0],)
    assert any(a.action == "split" and DETECTORS[1] in a.note for a in street.incidents.audit(group.id))
    assert any("拆出" in a.note for a in street.incidents.audit(kept.id))
    street.alerts.act(group.id, Action.FALSE_ALARM, "值班员 王芳", "厨房油烟", T0 + 6 * S)
    assert street.incidents.get(kept.id).state is State.OPEN
    other = next(m for m in members if m.device_id == DETECTORS[0])
    assert street.incidents.get(other.id).state is State.FALSE_ALARM
    with pytest.raises(Invalid):
        street.alerts.split(kept.id, DETECTORS[0], "值班员 王芳", T0 + 7 * S)  # not a group


def test_merging_an_alarm_into_a_group_makes_the_group_carry_it(street):
    group, members = suspected_fire(street)
    street.alerts.split(group.id, DETECTORS[1], "值班员 王芳", T0 + 5 * S)
    alone = next(m for m in members if m.device_id == DETECTORS[1])
    bigger = street.alerts.merge(alone.id, group.id, "值班员 王芳", "同一处火情", T0 + 6 * S)
    assert DETECTORS[1] in bigger.members
    assert street.incidents.get(alone.id).state is State.MERGED
    assert any(a.action == "merge_in" and alone.id in a.note for a in street.incidents.audit(group.id))


def test_a_false_alarm_stands_the_dispatched_station_down_and_no_late_incident_climbs(street):
    street.alarm(DETECTORS[0], T0 + S)
    (alarm,) = street.active("smoke_alarm")
    dispatches = [r for r in street.outbox.for_incident(alarm.id) if r.dispatch_id]
    assert {r.place_id for r in dispatches} == {"MFS-XQ"}  # the covering station was dispatched
    dispatch_id = dispatches[0].dispatch_id

    street.alerts.act(alarm.id, Action.FALSE_ALARM, "值班员 王芳", "厨房蒸汽", T0 + 20 * S)

    cancels = [r for r in street.outbox.for_incident(alarm.id) if r.role == STAND_DOWN_ROLE]
    assert {r.channel for r in cancels} == {CHANNEL_MQTT, CHANNEL_WEBHOOK}
    mqtt = next(r for r in cancels if r.channel == CHANNEL_MQTT)
    assert mqtt.topic == "dispatch/v1/wanli/fire_station/MFS-XQ/duty"
    body = json.loads(mqtt.payload)
    assert (body["type"], body["dispatch_id"], body["state"]) == ("dispatch_cancel", dispatch_id, "false_alarm")
    assert street.outbox.pending()  # waiting for the dispatcher, like every notice
    (timed,) = [d for d in street.alerts.response_times() if d["dispatch_id"] == dispatch_id]
    assert timed["cancelled_ms"] == T0 + 20 * S  # the dispatch is closed
    assert [a.action for a in street.incidents.audit(alarm.id)][-2:] == ["false_alarm", "stand_down"]
    assert any("撤回" in a.note for a in street.incidents.audit(alarm.id))

    street.tick_through(T0 + 30 * S, T0 + 15 * MIN)  # well past the 1-minute and 3-minute marks
    assert street.active("dispatch_ack_late") == [] and street.active("dispatch_arrival_late") == []
    # the station's late answer to a cancelled dispatch is no breach either
    late = fs.DispatchAck(v=1, ts=T0 + 16 * MIN, seq=1, dispatch_id=dispatch_id)
    street.alerts.handle_batch([Reading("wanli", "fire_station", "MFS-XQ", late.CLASS, late, T0 + 16 * MIN)],
                               T0 + 16 * MIN)
    assert street.active("dispatch_ack_late") == []


def test_a_late_incident_already_raised_closes_when_its_dispatch_is_cancelled(street):
    street.alarm(DETECTORS[0], T0 + S)
    (alarm,) = street.active("smoke_alarm")
    street.alerts.tick(T0 + 62 * S)  # the station missed its minute
    (late,) = street.active("dispatch_ack_late")
    street.alerts.act(alarm.id, Action.FALSE_ALARM, "值班员 王芳", "", T0 + 70 * S)
    assert street.incidents.get(late.id).state is State.CLOSED
    assert any(a.action == "stand_down" for a in street.incidents.audit(late.id))
    step = street.incidents.get(late.id).escalation_step
    street.tick_through(T0 + 80 * S, T0 + 15 * MIN)
    assert street.incidents.get(late.id).escalation_step == step and street.active("dispatch_ack_late") == []


def test_closing_after_someone_was_on_scene_sends_no_cancel_but_closes_the_dispatch(street):
    street.alarm(DETECTORS[0], T0 + S)
    (alarm,) = street.active("smoke_alarm")
    for action in (Action.ACKNOWLEDGE, Action.DISPATCH, Action.ARRIVE, Action.RESOLVE, Action.VERIFY):
        street.alerts.act(alarm.id, action, "值班员 王芳", "", T0 + 20 * S)  # an operator relaying the station's calls
    assert [r for r in street.outbox.for_incident(alarm.id) if r.role == STAND_DOWN_ROLE] == []
    street.tick_through(T0 + 30 * S, T0 + 10 * MIN)
    assert street.active("dispatch_ack_late") == [] and street.active("dispatch_arrival_late") == []


def test_a_finished_dispatch_is_not_called_off_when_the_incident_is_closed(street):
    street.alarm(DETECTORS[0], T0 + S)
    (alarm,) = street.active("smoke_alarm")
    dispatch_id = next(r.dispatch_id for r in street.outbox.for_incident(alarm.id) if r.dispatch_id)
    for step, t in ((fs.DispatchAck, 20), (fs.DispatchOnScene, 90), (fs.DispatchFinished, 150)):
        m = step(v=1, ts=T0 + t * S, seq=t, dispatch_id=dispatch_id)
        street.alerts.handle_batch([Reading("wanli", "fire_station", "MFS-XQ", m.CLASS, m, T0 + t * S)], T0 + t * S)
    assert street.incidents.get(alarm.id).state is State.RESOLVED
    street.alerts.act(alarm.id, Action.VERIFY, "值班员 王芳", "", T0 + 200 * S)
    assert [r for r in street.outbox.for_incident(alarm.id) if r.role == STAND_DOWN_ROLE] == []
