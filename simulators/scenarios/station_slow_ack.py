"""A micro fire station slow to acknowledge a dispatch.

At 14:00 the detector of 香泉 1号楼 1104 sounds. 香泉微型消防站 is dispatched, but its duty
phone is in another room: the crew acknowledges after 1½–2½ minutes and is on scene after
four to five.

Expected: the smoke alarm (HIGH); the 1-minute rule broken: ``dispatch_ack_late`` (HIGH)
raised from the clock about a minute after the dispatch, before the late acknowledgement
comes, told to the community and the street's operations centre (tier ``street``); the
3-minute rule broken too (``dispatch_arrival_late``); and the late acknowledgement still
moves the smoke alarm on from ``open``.
"""

from devices.kinds.fire_station.simulator import FireStationSim
from simulators.expectations import ExpectIncident
from simulators.scenario import Scenario, Stage


def play(stage: Stage) -> None:
    station = stage.device("MFS-XQ")
    assert isinstance(station, FireStationSim)
    station.response = "slow"
    stage.wait(20)
    stage.mark("alarm")
    stage.send([stage.device("SD-XQ01-1104").alarm(stage.now_ms())])  # type: ignore[attr-defined]
    stage.say(f"{stage.local_time()} 1104室烟感报警，派单香泉微型消防站")
    stage.wait(70)
    stage.say("一分钟内未确认出动")
    stage.wait(260)
    stage.say("微型消防站迟到")
    stage.wait(20)


SCENARIO = Scenario(
    duration_s=370,  # the script's simulated seconds (progress and time left)
    name="station_slow_ack", title="微型消防站确认出动超时", summary="香泉1号楼1104室烟感报警，派单香泉微型消防站；值班电话在另一房间，1分半到2分半后才确认出动，4到5分钟后到场。",
    marks={"alarm": "烟感报警"},
    play=play, buildings=("xq-01",), speed=60, start_local=(14, 0),
    expect=(
        ExpectIncident("smoke_alarm", severity="high", device="SD-XQ01-1104", within_s=30, after="alarm",
                       state="acknowledged|dispatched|on_scene"),
        ExpectIncident("dispatch_ack_late:*", severity="high", device="MFS-XQ", count=None, within_s=90,
                       after="alarm", tier="street"),
        ExpectIncident("dispatch_arrival_late:*", severity="high", device="MFS-XQ", count=None, within_s=220,
                       after="alarm"),
    ),
)
