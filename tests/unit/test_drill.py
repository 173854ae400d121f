"""The drill namespace's pure parts (devices/drill.py, simulators/drill.py) and what follows from a DRILL- id:
incidents marked drill and kept apart from real ones, notices on drill/v1 without phones, a tester's clock."""

import json

import pytest

from alerts import escalation
from alerts.incidents import Severity, Signal, State, merge_into, open_or_update
from alerts.rules.base import Place
from devices.drill import drill_id, is_drill, real_id, refuse_real
from devices.hierarchy import load_hierarchy
from devices.kinds.smoke_detector import contract as sd
from devices.kinds.smoke_detector.rules import SuspectedFire
from devices.reading import Reading
from simulators.drill import DrillView, drill_rows, drill_topic
from simulators.population import Population, place_rows
from tests.support.rules import RuleWorld
from foundation.errors import Invalid
from foundation.service_clock import ServiceClock

H = load_hierarchy()
T0 = 1_795_000_000_000
KIND = "smoke_detector"


def test_a_drill_id_is_the_reserved_prefix_and_maps_both_ways():
    assert is_drill("DRILL-SD-XQ01-0301") and is_drill("drill-sd-1") and not is_drill("SD-XQ01-0301")
    assert not is_drill("DRILLSD-1") and not is_drill("SD-DRILL-1")
    assert drill_id("SD-XQ01-0301") == "DRILL-SD-XQ01-0301" == drill_id("DRILL-SD-XQ01-0301")
    assert real_id("DRILL-SD-XQ01-0301") == "SD-XQ01-0301" == real_id("SD-XQ01-0301")
    refuse_real(["DRILL-A", "DRILL-B"])
    with pytest.raises(Invalid, match="SD-XQ01-0301"):
        refuse_real(["DRILL-A", "SD-XQ01-0301"])


def test_a_drill_population_is_the_places_twins_and_a_script_still_names_the_real_ids():
    rows = drill_rows(place_rows(H, building_ids=["xq-01"]))
    assert rows and all(r[0].startswith("DRILL-") and r[5].startswith("【演练】") for r in rows)
    assert ("DRILL-MFS-XQ", "fire_station") in {(r[0], r[1]) for r in rows}
    population = Population.from_rows(rows, "wanli")
    assert population.device("SD-XQ01-0301") is population.devices["DRILL-SD-XQ01-0301"]
    topics = {t for t, _ in population.start(T0)}
    assert topics and all(t.split("/")[4].startswith("DRILL-") for t in topics)


def test_what_a_drill_publishes_by_hand_goes_out_as_the_twin():
    assert drill_topic("safety/v1/wanli/smoke_detector/SD-XQ01-0101/event") == \
        "safety/v1/wanli/smoke_detector/DRILL-SD-XQ01-0101/event"
    twin = "safety/v1/wanli/smoke_detector/DRILL-SD-1/event"
    assert drill_topic(twin) == twin
    # a malformed topic stays malformed (it is refused as such, never turned into a valid id)
    assert drill_topic("safety/v1/wanli/smoke_detector/-SD-XQ01-0101/event") == \
        "safety/v1/wanli/smoke_detector/-SD-XQ01-0101/event"
    assert drill_topic("dispatch/v1/wanli/fire_station/MFS-XQ/duty") == "dispatch/v1/wanli/fire_station/MFS-XQ/duty"


def test_a_run_sees_only_its_own_incidents_under_its_own_names_and_counts_from_its_start():
    view = DrillView({"DRILL-SD-XQ01-0301", "DRILL-SD-XQ01-0402"}, since_ms=T0,
                     dead_letters_before={"seq_backwards": 5}, stats_before={"received": 100, "duplicates": 2})
    mine = {"device_id": "DRILL-SD-XQ01-0301", "members": [], "opened_at": "2026-12-01T08:00:00+00:00"}
    group = {"device_id": "DRILL-SD-XQ01-0402", "members": ["DRILL-SD-XQ01-0301", "DRILL-SD-XQ01-0402"],
             "opened_at": "2026-12-01T08:00:00+00:00"}
    real = {"device_id": "SD-XQ01-0301", "members": [], "opened_at": "2026-12-01T08:00:00+00:00"}
    before = {"device_id": "DRILL-SD-XQ01-0301", "members": [], "opened_at": "2020-01-01T00:00:00+00:00"}
    seen = view.incidents([mine, group, real, before])
    assert [i["device_id"] for i in seen] == ["SD-XQ01-0301", "SD-XQ01-0402"]
    assert seen[1]["members"] == ["SD-XQ01-0301", "SD-XQ01-0402"]
    assert view.dead_letters({"seq_backwards": 5, "bad_json": 1}) == {"bad_json": 1}
    assert view.stats({"received": 130, "duplicates": 3, "name": "x"}) == {"received": 30, "duplicates": 1, "name": "x"}
    assert view.devices([{"device_id": "DRILL-SD-XQ01-0301", "health": []}]) == [{"device_id": "SD-XQ01-0301",
                                                                                   "health": []}]


def _incident(device: str, scope: str = "", condition: str = "smoke_alarm", severity=Severity.HIGH):
    signal = Signal(device, KIND, condition, "fire", severity, "烟感报警", T0, "why", scope=scope,
                    members=(device,) if scope else ())
    return open_or_update(None, signal, H.locate("xq-01", 3, "0301"), T0, f"inc_{device}")[0]


def test_a_drill_incident_is_marked_and_never_shares_a_key_or_a_group_with_a_real_one():
    drill, real = _incident("DRILL-SD-XQ01-0301"), _incident("SD-XQ01-0301")
    assert drill.drill and not real.drill and drill.key != real.key
    drill_fire = _incident("DRILL-SD-XQ01-0301", "building:xq-01", "suspected_fire", Severity.CRITICAL)
    real_fire = _incident("SD-XQ01-0301", "building:xq-01", "suspected_fire", Severity.CRITICAL)
    assert drill_fire.key == "drill|building:xq-01:suspected_fire" != real_fire.key == "building:xq-01:suspected_fire"
    with pytest.raises(Invalid, match="演练"):
        merge_into(real, drill_fire, "op", "", T0)


def test_a_drill_alarm_beside_a_real_one_in_the_building_is_no_suspected_fire():
    places = [Place("SD-XQ01-0301", KIND, "xq-01", 3, "0301"), Place("DRILL-SD-XQ01-0402", KIND, "xq-01", 4, "0402"),
              Place("DRILL-SD-XQ01-0502", KIND, "xq-01", 5, "0502")]
    ctx, rule = RuleWorld([SuspectedFire], places), SuspectedFire()

    def alarm(device, ts):
        m = sd.Alarm(v=1, ts=ts, seq=0)
        return rule.on_reading(Reading("wanli", KIND, device, m.CLASS, m, received_ms=ts), ctx, ts)

    assert alarm("SD-XQ01-0301", T0) == []
    assert alarm("DRILL-SD-XQ01-0402", T0 + 1000) == []  # a real alarm on the floor below is not its partner
    (fire,) = alarm("DRILL-SD-XQ01-0502", T0 + 2000)
    assert fire.members == ("DRILL-SD-XQ01-0402", "DRILL-SD-XQ01-0502") and fire.key.startswith("drill|")


def test_a_drill_incidents_notices_go_to_drill_topics_without_phones_and_dispatch_the_station_twin():
    inc, notices, _ = escalation.start(_incident("DRILL-SD-XQ01-0301"), H, T0)
    assert notices and all(n.drill and n.topic.startswith("drill/v1/wanli/") and n.phone == "" for n in notices)
    station = next(n for n in notices if n.tier == "fire_station")
    assert (station.place_id, station.topic) == ("DRILL-MFS-XQ", "drill/v1/wanli/fire_station/DRILL-MFS-XQ/duty")
    body = json.loads(station.payload)
    assert body["drill"] is True and body["title"].startswith("【演练】")
    # the real one as ever
    _, real, _ = escalation.start(_incident("SD-XQ01-0301"), H, T0)
    assert all(not n.drill and n.topic.startswith("dispatch/v1/") for n in real)
    assert any(n.phone for n in real)
    # calling the drill's station off goes to its twin's drill topic too
    ended = inc.__class__(**{**{f: getattr(inc, f) for f in inc.__slots__}, "state": State.FALSE_ALARM})
    (cancel,) = escalation.stand_down_notices(ended, station.dispatch_id, "DRILL-MFS-XQ", H, T0)
    assert cancel.drill and cancel.topic == "drill/v1/wanli/fire_station/DRILL-MFS-XQ/duty" and cancel.phone == ""


def test_a_testers_clock_runs_at_its_speed_from_its_start_and_steps_ahead():
    now = [100.0]
    clock = ServiceClock(3600, T0, monotonic=lambda: now[0])
    assert clock.now_ms() == T0
    now[0] += 1.5
    assert clock.now_ms() == T0 + int(1.5 * 3600 * 1000)
    assert clock.advance(60_000) == T0 + int(1.5 * 3600 * 1000) + 60_000
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        ServiceClock(0)
