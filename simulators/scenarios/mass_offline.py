"""1,000 detectors going offline at once (a network outage), then returning.

The first buildings of the generated street, about 1,000 smoke detectors, live four hours
at their real four-hourly heartbeat, so that when the carrier's network fails at once
their last heartbeats lie spread over those four hours, as they would. The broker
announces every lost connection (each detector's ``offline`` last will). Twelve and a half
hours later the network is back and every detector reports again.

Expected: the registry shows them offline as soon as the outage starts; the silence rule
sees them go overdue (three heartbeats, 12 h) and gathers them into ONE HIGH
``mass_offline`` incident for the street (scope ``street:wanli``) instead of a thousand
individual ``offline`` pages (docs/incidents.md: "a thousand detectors going offline in a
network outage one maintenance incident rather than a thousand pages"); after the return
every detector is online again.
"""

from devices.hierarchy import Hierarchy
from simulators.expectations import ExpectDevices, ExpectIncident, ExpectNoIncident
from simulators.population import Row, place_rows
from simulators.scenario import Scenario, Stage

DETECTORS = 1000
HOUR = 3600


def detectors(hierarchy: Hierarchy) -> list[Row]:
    rows: list[Row] = []
    for community in hierarchy.communities.values():
        for building_id in community.building_ids:
            rows += [r for r in place_rows(hierarchy, building_ids=[building_id]) if r[1] == "smoke_detector"]
            if len(rows) >= DETECTORS:
                return rows[:DETECTORS]
    return rows


def play(stage: Stage) -> None:
    stage.say("1,000 个烟感正常上报（心跳每 4 小时）")
    stage.wait(4 * HOUR)
    stage.mark("outage")
    now = stage.now_ms()
    for d in stage.population.devices.values():
        stage.send(d.go_silent(now, last_will=True))
    stage.say("运营商网络中断：1,000 个烟感同时失联")
    stage.checkpoint("outage")
    stage.skip(7.8 * HOUR, step_s=7.8 * HOUR)  # nothing can be overdue before 8 h: one jump
    stage.say("8 小时后：第一批烟感超过 3 个心跳周期")
    stage.wait(4.7 * HOUR)
    stage.checkpoint("before_return")
    now = stage.now_ms()
    for d in stage.population.devices.values():
        stage.send(d.come_back(now))
        stage.changed(d)
    stage.say("网络恢复：全部烟感重新上线")
    stage.wait(600)


SCENARIO = Scenario(
    duration_s=60000,  # the script's simulated seconds (progress and time left)
    name="mass_offline", title="千台烟感同时离线后恢复", summary="运营商网络中断：生成街区前几栋楼约1,000个烟感同时离线，十二个半小时后网络恢复、全部重新上报。",
    marks={"outage": "网络中断"},
    play=play, rows=detectors, hierarchy="street", speed=1200, needs_shared_clock=True,
    expect=(
        ExpectDevices(health="offline", every=True, at="outage"),
        ExpectIncident("mass_offline", severity="high", scope="street:wanli", members_at_least=DETECTORS * 9 // 10,
                       within_s=12.5 * HOUR, after="outage", at="before_return"),
        ExpectNoIncident(("offline",), at="before_return"),
        ExpectDevices(health="online", every=True),
    ),
)
