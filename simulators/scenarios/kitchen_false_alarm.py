"""A kitchen false alarm: frying at 18:05 sets off the detector of 0301, which clears by itself.

The resident presses mute; four minutes later the smoke is gone and the detector sends
``alarm_cleared``. Nothing else in the building sounds.

Expected: one HIGH smoke alarm for SD-XQ01-0301 within a minute (building tier: the
building-group leader and the property company are told, the station is dispatched); no
suspected fire (one kitchen is not two households); no flapping; the detector's last
message is ``alarm_cleared``; the incident stays for a person to verify, because a clear
is not a verdict.
"""

from simulators.expectations import ExpectDevices, ExpectIncident, ExpectNoIncident
from simulators.scenario import Scenario, Stage


def play(stage: Stage) -> None:
    stage.wait(20)
    stage.mark("cooking")
    detector = stage.device("SD-XQ01-0301")
    detector.cook(stage.now_ms(), duration_s=240, mute=True)  # type: ignore[attr-defined]
    stage.changed(detector)
    stage.say(f"{stage.local_time()} 0301室炒菜，油烟触发烟感")
    stage.wait(120)
    stage.say("住户按下消音键")
    stage.wait(160)
    stage.say("油烟散去，烟感自动消警")
    stage.wait(30)


SCENARIO = Scenario(
    duration_s=330,  # the script's simulated seconds (progress and time left)
    name="kitchen_false_alarm", title="厨房油烟误报", summary="香泉1号楼0301室炒菜，油烟触发烟感；住户按下消音键，四分钟后油烟散去，烟感自动消警。楼内其他烟感均未报警。",
    marks={"cooking": "开始炒菜"},
    play=play, buildings=("xq-01",), speed=90, start_local=(18, 5),
    expect=(
        ExpectIncident("smoke_alarm", severity="high", device="SD-XQ01-0301", within_s=60, after="cooking",
                       tier="community", state="active", max_event_count=1),
        ExpectNoIncident(("suspected_fire", "flapping", "repeated_silencing")),
        ExpectNoIncident(("smoke_alarm",), device="SD-XQ01-0[!3]*", text="楼内其他烟感不报警"),
        ExpectDevices(device="SD-XQ01-0301", last_type="alarm_cleared"),
    ),
)
