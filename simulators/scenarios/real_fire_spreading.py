"""A real fire spreading across floors of one building (香泉 1号楼).

A fire starts in unit 0502 at 02:10 at night; smoke climbs the stairwell: the detector of
0602 sounds 90 s later, 0702 after 150 s, the neighbour 0501 after 200 s. Every detector
keeps sounding, smoke and heat rising, until the micro fire station is on scene.

Expected: each sounding detector is its own HIGH smoke alarm; the second detector makes
the building one CRITICAL suspected fire (scope ``building:xq-01``) that gathers them and
tells the street's operations centre at once (tier ``street``); the micro fire station
香泉微站 is dispatched and acknowledges on its terminal (the incident leaves ``open``),
within the 1-minute rule, so no late-response incident is raised.
"""

from simulators.expectations import ExpectIncident, ExpectNoIncident
from simulators.scenario import Scenario, Stage

FLOORS = (("SD-XQ01-0502", 0), ("SD-XQ01-0602", 90), ("SD-XQ01-0702", 150), ("SD-XQ01-0501", 200))


def play(stage: Stage) -> None:
    stage.wait(30)
    stage.mark("ignition")
    t0 = stage.now_ms()
    for device_id, after_s in FLOORS:
        detector = stage.device(device_id)
        detector.burn(t0 + after_s * 1000)  # type: ignore[attr-defined]
        stage.changed(detector)
    stage.say(f"{stage.local_time()} 0502室起火，烟雾沿楼梯间上升")
    stage.wait(100)
    stage.say("0602室烟感报警：疑似火情，微型消防站出动")
    stage.wait(130)
    stage.say("火势蔓延至 7 层与 0501 室")
    stage.wait(120)
    for device_id, _ in FLOORS:
        stage.device(device_id).extinguish(stage.now_ms())  # type: ignore[attr-defined]
        stage.changed(stage.device(device_id))
    stage.say("微型消防站到场扑灭")
    stage.wait(20)


SCENARIO = Scenario(
    duration_s=400,  # the script's simulated seconds (progress and time left)
    name="real_fire_spreading", title="真实火情沿楼层蔓延", summary="香泉1号楼0502室起火，烟雾沿楼梯间上升：0602室、0702室、0501室烟感相继报警，直到微型消防站到场扑灭。",
    marks={"ignition": "起火"},
    play=play, buildings=("xq-01",), speed=60, start_local=(2, 10),
    expect=(
        ExpectIncident("smoke_alarm", severity="high", count=4, device="SD-XQ01-0[5-7]0[12]", within_s=210,
                       after="ignition", text="0502、0602、0702、0501室烟感各报警一起（高），起火后 210 秒内生成"),
        ExpectIncident("suspected_fire", severity="critical", scope="building:xq-01", members_at_least=4,
                       within_s=100, after="ignition", tier="street", tier_within_s=110, state="active"),
        ExpectIncident("suspected_fire", count=1, state="acknowledged|dispatched|on_scene", after="ignition",
                       text="疑似火情只有一起，微型消防站已确认出动（已确认、已派单或已到场）"),
        ExpectNoIncident(("dispatch_ack_late:*",)),
    ),
)
