import pytest

from alerts.incidents import Action, Severity, Signal, State, open_or_update, transition
from devices.hierarchy import Location
from foundation.errors import IllegalTransition

LOC = Location("wanli", "万里街道", building_id="xq-01", building="香泉 1号楼", floor=3, unit="0301")


def signal(severity=Severity.HIGH, at=1000, condition="smoke_alarm"):
    return Signal("SD-1", "smoke_detector", condition, "fire", severity, "烟感报警", at, "detail")


def opened():
    incident, entry = open_or_update(None, signal(), LOC, now_ms=2000, new_id="inc_1")
    return incident, entry


def test_a_signal_opens_an_incident_with_an_audit_entry():
    incident, entry = opened()
    assert (incident.id, incident.state, incident.severity, incident.key) == ("inc_1", State.OPEN, Severity.HIGH, "SD-1:smoke_alarm")
    assert (incident.opened_ms, incident.first_event_ms, incident.event_count) == (2000, 1000, 1)
    assert entry is not None and (entry.action, entry.from_state, entry.to_state, entry.actor) == ("open", None, State.OPEN, "system")


def test_a_repeat_updates_the_open_incident_instead_of_opening_another():
    incident, _ = opened()
    again, entry = open_or_update(incident, signal(at=5000), LOC, now_ms=6000, new_id="inc_2")
    assert again.id == "inc_1" and again.event_count == 2 and again.last_event_ms == 5000 and again.updated_ms == 6000
    assert entry is None


def test_a_more_severe_repeat_raises_severity_and_says_so():
    incident, _ = opened()
    again, entry = open_or_update(incident, signal(Severity.CRITICAL), LOC, now_ms=3000, new_id="x")
    assert again.severity is Severity.CRITICAL
    assert entry is not None and entry.action == "escalate_severity" and "high → critical" in entry.note


def test_a_less_severe_repeat_never_lowers_severity():
    incident, _ = opened()
    again, _ = open_or_update(incident, signal(Severity.WARNING), LOC, now_ms=3000, new_id="x")
    assert again.severity is Severity.HIGH


def test_a_signal_after_closure_opens_a_new_incident():
    incident, _ = opened()
    closed, _ = transition(incident, Action.FALSE_ALARM, "op", "kitchen steam", 3000)
    fresh, _ = open_or_update(closed, signal(), LOC, now_ms=4000, new_id="inc_2")
    assert fresh.id == "inc_2" and fresh.state is State.OPEN and fresh.event_count == 1


def test_the_closed_loop_from_open_to_verified_closure():
    incident, _ = opened()
    trail = []
    for t, action in enumerate([Action.ACKNOWLEDGE, Action.DISPATCH, Action.ARRIVE, Action.RESOLVE, Action.VERIFY]):
        incident, entry = transition(incident, action, f"person{t}", f"note {t}", 3000 + t)
        trail.append((entry.from_state, entry.to_state, entry.actor))
    assert [to for _, to, _ in trail] == [State.ACKNOWLEDGED, State.DISPATCHED, State.ON_SCENE, State.RESOLVED, State.CLOSED]
    assert incident.acknowledged_ms == 3000 and incident.acknowledged_by == "person0"
    assert incident.closed_ms == 3004 and not incident.state.is_active


def test_dispatching_without_acknowledging_counts_as_acknowledgement():
    incident, _ = opened()
    incident, _ = transition(incident, Action.DISPATCH, "op", "", 2500)
    assert incident.acknowledged_ms == 2500 and incident.state is State.DISPATCHED


@pytest.mark.parametrize(
    ("steps", "illegal"),
    [
        ([], Action.VERIFY),  # closing needs a resolution first (核查 before 结案)
        ([], Action.RESOLVE),  # nobody has acknowledged it
        ([], Action.ARRIVE),
        ([Action.ACKNOWLEDGE], Action.ACKNOWLEDGE),
        ([Action.FALSE_ALARM], Action.ACKNOWLEDGE),
        ([Action.ACKNOWLEDGE, Action.RESOLVE, Action.VERIFY], Action.FALSE_ALARM),
    ],
)
def test_illegal_transitions_are_refused_with_state_and_action(steps, illegal):
    incident, _ = opened()
    for step in steps:
        incident, _ = transition(incident, step, "op", "", 3000)
    with pytest.raises(IllegalTransition) as caught:
        transition(incident, illegal, "op", "", 4000)
    assert caught.value.state == incident.state.value and caught.value.action == illegal.value
    assert f"cannot {illegal.value} when {incident.state.value}" in str(caught.value)


def test_a_note_is_allowed_in_any_state_and_changes_nothing_else():
    incident, _ = opened()
    noted, entry = transition(incident, Action.NOTE, "op", "called the resident", 2100)
    assert noted.state is State.OPEN and entry.note == "called the resident" and entry.from_state == entry.to_state


def test_only_a_signal_that_says_so_lowers_severity_and_the_trail_keeps_why():
    incident, _ = opened()
    lower = Signal("SD-1", "smoke_detector", "smoke_alarm", "fire", Severity.WARNING, "t", 3000, "cancelled in time",
                   downgrade=True)
    lowered, entry = open_or_update(incident, lower, LOC, now_ms=3000, new_id="x")
    assert lowered.severity is Severity.WARNING and lowered.event_count == 1 and lowered.id == incident.id
    assert entry is not None and entry.action == "downgrade_severity" and "high → warning" in entry.note
    assert open_or_update(lowered, lower, LOC, now_ms=3100, new_id="y") == (lowered, None)  # already that low


def test_a_group_signal_gathers_its_members_in_one_incident():
    first = Signal("SD-1", "smoke_detector", "suspected_fire", "fire", Severity.CRITICAL, "疑似火灾", 1000,
                   scope="building:xq-01", members=("SD-1", "SD-2"))
    incident, _ = open_or_update(None, first, LOC, now_ms=1000, new_id="inc_b")
    assert incident.key == "building:xq-01:suspected_fire" and incident.members == ("SD-1", "SD-2")
    more = Signal("SD-3", "smoke_detector", "suspected_fire", "fire", Severity.CRITICAL, "疑似火灾", 2000,
                  scope="building:xq-01", members=("SD-3",))
    again, _ = open_or_update(incident, more, LOC, now_ms=2000, new_id="x")
    assert again.id == "inc_b" and again.members == ("SD-1", "SD-2", "SD-3") and again.event_count == 2


def test_a_device_incident_is_about_its_device_and_a_group_says_its_place_and_how_many_it_gathers():
    incident, _ = opened()
    assert incident.subject == "SD-1"
    fire = Signal("SD-1", "smoke_detector", "suspected_fire", "fire", Severity.CRITICAL, "疑似火灾", 1000, "why",
                  scope="building:xq-01", members=("SD-1", "SD-2"))
    group, _ = open_or_update(None, fire, LOC, now_ms=2000, new_id="inc_2")
    assert group.subject == "楼栋 xq-01：2 个烟感探测器"
    third = Signal("SD-3", "smoke_detector", "suspected_fire", "fire", Severity.CRITICAL, "疑似火灾", 1500, "why",
                   scope="building:xq-01", members=("SD-1", "SD-3"))
    group, _ = open_or_update(group, third, LOC, now_ms=2500, new_id="x")
    assert group.subject == "楼栋 xq-01：3 个烟感探测器" and group.device_id == "SD-1"
    storm = Signal("CS-1", "charging_station", "mass_offline", "maintenance", Severity.HIGH, "离线", 1000, "why",
                   scope="street:wanli", members=tuple(f"CS-{i}" for i in range(3000)))
    big, _ = open_or_update(None, storm, LOC, now_ms=2000, new_id="inc_3")
    assert big.subject == "街道 wanli：2000 个以上电动车充电桩"  # the members are capped; the detail has the count


def test_the_api_shows_what_a_group_incident_is_beside_the_device_that_raised_it():
    from dashboards.schemas import IncidentPublic

    fire = Signal("SD-1", "smoke_detector", "suspected_fire", "fire", Severity.CRITICAL, "疑似火灾", 1000, "why",
                  scope="building:xq-01", members=("SD-1", "SD-2"))
    group, _ = open_or_update(None, fire, LOC, now_ms=2000, new_id="inc_2")
    public = IncidentPublic.of(group)
    assert (public.device_id, public.subject, public.members) == ("SD-1", "楼栋 xq-01：2 个烟感探测器", ["SD-1", "SD-2"])


def test_the_api_reads_every_field_of_an_incident_by_name_and_its_times_as_utc_datetimes():
    from datetime import UTC, datetime

    from dashboards.schemas import IncidentDetail, IncidentPublic

    fire = Signal("DRILL-SD-1", "smoke_detector", "suspected_fire", "fire", Severity.CRITICAL, "疑似火灾", 1000, "why",
                  flags=("clock_behind",))
    incident, _ = open_or_update(None, fire, LOC, now_ms=1_795_000_000_123, new_id="inc_4")
    for name, spec in IncidentPublic.model_fields.items():  # none left to a default for want of its attribute
        assert hasattr(incident, spec.validation_alias or name), name
    public = IncidentPublic.of(incident)
    assert public.opened_at == datetime.fromtimestamp(1_795_000_000.123, tz=UTC) and public.closed_at is None
    assert (public.severity, public.state, public.drill, public.flags) == ("critical", "open", True, ["clock_behind"])
    assert public.location.label == LOC.label() and public.location.building_id == LOC.building_id
    detail = IncidentDetail(**public.model_dump(), audit=[])  # built by the field names, as the route does
    assert detail.model_dump(exclude={"audit"}) == public.model_dump()
