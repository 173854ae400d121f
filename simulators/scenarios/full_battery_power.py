"""Power kept on a full battery: port 2 of the 香泉 1号楼 shed has a stuck relay.

A rider plugs in a nearly full pack at 22:00 and leaves it overnight; the pack is full
within minutes, but the port goes on feeding it about 60 W (overcharging, the pack
warming), while the healthy port 4 next to it cuts off.

Expected: one WARNING ``charging_full:2`` (level-triggered: every snapshot that still
shows it counts into the same incident) within five minutes, told to the property company
and the building-group leader (tier ``community``); nothing for port 4.
"""

from devices.kinds.charging_station.simulator import ChargingStationSim
from simulators.expectations import ExpectIncident, ExpectNoIncident
from simulators.scenario import Scenario, Stage


def play(stage: Stage) -> None:
    station = stage.device("CS-XQ01-01")
    assert isinstance(station, ChargingStationSim)
    stage.mark("plugged")
    station.plug_in(2, soc=0.998, now_ms=stage.now_ms())
    station.plug_in(4, soc=0.998, now_ms=stage.now_ms())
    station.keep_power_on_full(2)
    stage.say(f"{stage.local_time()} 2 号口与 4 号口接入近满电电池；2 号口继电器粘连")
    stage.wait(420)
    stage.say("电池已满，2 号口仍在供电")
    stage.wait(60)


SCENARIO = Scenario(
    duration_s=480,  # the script's simulated seconds (progress and time left)
    name="full_battery_power", title="电池充满仍持续供电", summary="香泉1号楼充电棚2号口继电器粘连：骑手接入近满电电池后离开，充满后该口仍以约60瓦持续供电；相邻正常的4号口按时断电。",
    marks={"plugged": "接入充电"},
    play=play, buildings=("xq-01",), speed=180, start_local=(22, 0),
    expect=(
        ExpectIncident("charging_full:2", severity="warning", within_s=300, after="plugged", tier="community"),
        ExpectNoIncident(("charging_full:[!2]*", "port_overheat:*", "thermal_runaway:*")),
    ),
)
