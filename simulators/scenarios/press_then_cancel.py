"""Press then cancel: 刘老伯 (香泉 1号楼 1201) presses by mistake and cancels a few seconds later.

Expected: the press opens a CRITICAL ``emergency_press`` at once; the cancel within the
one-minute grace lowers it to WARNING (and says so), but does not close it: somebody still
calls back, because a person who pressed and then cancelled may not be fine.
"""

from devices.kinds.elderly_alarm.simulator import ElderlyAlarmSim
from simulators.expectations import ExpectIncident
from simulators.scenario import Scenario, Stage


def play(stage: Stage) -> None:
    stage.wait(20)
    stage.mark("press")
    alarm = stage.device("EA-XQ01-1201")
    assert isinstance(alarm, ElderlyAlarmSim)
    alarm.press_then_cancel(stage.now_ms())
    stage.changed(alarm)
    stage.say(f"{stage.local_time()} 1201室刘老伯误按一键通，随即取消")
    stage.wait(60)


SCENARIO = Scenario(
    duration_s=80,  # the script's simulated seconds (progress and time left)
    name="press_then_cancel", title="误按后取消", summary="香泉1号楼1201室刘老伯误按一键通，几秒后取消。",
    marks={"press": "按下一键通"},
    play=play, buildings=("xq-01",), speed=20, start_local=(15, 0),
    expect=(
        ExpectIncident("emergency_press", severity="warning", device="EA-XQ01-1201", within_s=30, after="press",
                       state="open", max_event_count=2),
    ),
)
