"""Elderly inactivity over a day: 刘老伯 (香泉 1号楼 1201) falls ill at home one morning.

From 09:00 his home's door, water and motion sensors stop showing any activity and his
water meter stops turning; the one-touch alarm's heartbeats go on (the device lives, the
person may not). His neighbours in 0601 and 1801 live their days as usual. The scenario
jumps a day and a half ahead, an hour at a time, every device reporting at its cadence.

Expected: a HIGH welfare incident ``no_activity`` for EA-XQ01-1201 within 25 hours of his
last activity, telling the residents' committee and his family and doctor (tier
``community``); the water meter's ``low_water_use`` for WM-XQ01-1201; nothing for the
neighbours.
"""

from devices.hierarchy import Hierarchy
from devices.kinds.elderly_alarm.simulator import ElderlyAlarmSim
from devices.kinds.water_meter.simulator import WaterMeterSim
from simulators.expectations import ExpectIncident, ExpectNoIncident
from simulators.population import Row, building_rows
from simulators.scenario import Scenario, Stage


def households(hierarchy: Hierarchy) -> list[Row]:
    """Only the building's elderly households: a day's jump has no other devices to keep alive."""
    return [r for r in building_rows(hierarchy, hierarchy.building("xq-01"), 0) if r[1] in ("elderly_alarm", "water_meter")]


def play(stage: Stage) -> None:
    alarm, meter = stage.device("EA-XQ01-1201"), stage.device("WM-XQ01-1201")
    assert isinstance(alarm, ElderlyAlarmSim) and isinstance(meter, WaterMeterSim)
    stage.wait(60)
    stage.mark("ill")
    alarm.stop_activity()
    meter.stop_use()
    stage.say(f"{stage.local_time()} 刘老伯在家病倒：开门、用水、走动全部停止")
    for hour in range(1, 31):
        stage.skip(3600, step_s=3600)
        stage.say(f"已过去 {hour} 小时")


SCENARIO = Scenario(
    duration_s=108060,  # the script's simulated seconds (progress and time left)
    name="elderly_inactivity_day", title="独居老人全天无活动", summary="香泉1号楼1201室独居老人刘老伯早上在家病倒，此后开门、用水、走动全部停止，一键通心跳照常。场景逐小时跳过一天半，邻居0601、1801室生活如常。",
    marks={"ill": "老人病倒"},
    play=play, rows=households, speed=60, start_local=(8, 59), needs_shared_clock=True,
    expect=(
        ExpectIncident("no_activity", severity="high", device="EA-XQ01-1201", within_s=25 * 3600, after="ill",
                       tier="community"),
        ExpectIncident("low_water_use", severity="high", device="WM-XQ01-1201", within_s=25 * 3600, after="ill"),
        ExpectNoIncident(("no_activity", "low_water_use"), device="*-XQ01-[01][68]01",
                         text="邻居0601室、1801室不产生长时间无活动或用水异常偏少"),
    ),
)
