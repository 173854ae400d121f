"""An elderly resident's emergency press: 王阿婆 (84, living alone, 香泉 1号楼 0601) presses at 10:00.

Nobody acknowledges in this drill, so the whistle climbs.

Expected: one CRITICAL ``emergency_press`` within 30 s, its first step telling the
building-group leader, the residents' committee, the property company and her family and
doctor (tier ``community``); unacknowledged after a minute it reaches the street's
operations centre (tier ``street``) within 90 s of the press.
"""

from simulators.expectations import ExpectIncident, ExpectNoIncident
from simulators.scenario import Scenario, Stage


def play(stage: Stage) -> None:
    stage.wait(20)
    stage.mark("press")
    stage.send([stage.device("EA-XQ01-0601").press(stage.now_ms())])  # type: ignore[attr-defined]
    stage.say(f"{stage.local_time()} 0601室王阿婆按下一键通")
    stage.wait(60)
    stage.say("一分钟无人确认：上报街道城运中心")
    stage.wait(60)


SCENARIO = Scenario(
    duration_s=140,  # the script's simulated seconds (progress and time left)
    name="elderly_press", title="独居老人一键呼叫", summary="香泉1号楼0601室独居的84岁王阿婆按下一键通。本次演练无人确认，警情逐级上报。",
    marks={"press": "按下一键通"},
    play=play, buildings=("xq-01",), speed=60, start_local=(10, 0),
    expect=(
        ExpectIncident("emergency_press", severity="critical", device="EA-XQ01-0601", within_s=30, after="press",
                       tier="street", tier_within_s=90, state="open"),
        ExpectNoIncident(("emergency_press",), device="EA-XQ01-[!0]*", text="其他住户的一键通不产生紧急呼叫"),
    ),
)
