"""Thermal runaway in a charging shed (香泉 1号楼 充电棚) on a busy evening.

Four riders plug in at 19:30. At 19:40 the pack on port 3 goes into thermal runaway: the
port's temperature climbs a few degrees a minute and faster, passes 60 °C, and past about
110 °C the shed's smoke sensor goes off.

Expected: the rise is caught first, from the trend alone, as a CRITICAL suspected thermal
runaway on port 3 within 4 minutes (before any smoke), reaching the street's operations
centre; the overheating port (HIGH, over 60 °C) follows; then shed smoke, CRITICAL; no
other port raises anything.
"""

from devices.kinds.charging_station.simulator import ChargingStationSim
from simulators.expectations import ExpectIncident, ExpectNoIncident
from simulators.scenario import Scenario, Stage


def play(stage: Stage) -> None:
    station = stage.device("CS-XQ01-01")
    assert isinstance(station, ChargingStationSim)
    for port in (1, 2, 3, 5):
        station.plug_in(port, soc=0.3, now_ms=stage.now_ms())
    stage.say(f"{stage.local_time()} 四辆电动车接入充电")
    stage.wait(600)
    stage.mark("runaway")
    station.thermal_runaway(3)
    stage.say(f"{stage.local_time()} 3 号口电池热失控，温度急升")
    stage.wait(300)
    stage.say("3 号口温度超过 60 °C")
    stage.wait(300)
    stage.say("充电棚烟雾报警")
    stage.wait(60)


SCENARIO = Scenario(
    duration_s=1260,  # the script's simulated seconds (progress and time left)
    name="thermal_runaway_shed", title="充电棚电池热失控", summary="香泉1号楼充电棚四辆电动车充电，十分钟后3号口电池热失控：端口温度越升越快，超过60 °C，约110 °C时充电棚烟感报警。",
    marks={"runaway": "热失控开始"},
    play=play, buildings=("xq-01",), speed=180, start_local=(19, 30),
    expect=(
        ExpectIncident("thermal_runaway:3", severity="critical", within_s=240, after="runaway", tier="street"),
        ExpectIncident("port_overheat:3", severity="high", within_s=600, after="runaway"),
        ExpectIncident("shed_smoke", severity="critical", within_s=660, after="runaway"),
        ExpectNoIncident(("thermal_runaway:[!3]*", "port_overheat:[!3]*", "overcurrent:*", "offline")),
    ),
)
