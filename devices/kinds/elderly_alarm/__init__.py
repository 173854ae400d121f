"""One-touch alarm (一键通): one in every household of an elderly person living alone.

The whole kind is in this folder: ``contract.py`` its messages (MQTT payloads), ``rules.py`` its
alert rules, ``simulator.py`` its simulated device; here its words and where a street has it.
"""

from __future__ import annotations

from devices.hierarchy import Household
from devices.kind_slice import KindSlice, Placement, Row, building_code
from devices.kinds.elderly_alarm import contract


def _every_household(home: Household) -> list[Row]:
    return [(f"EA-{building_code(home.building_id)}-{home.unit}", "elderly_alarm", home.building_id, int(home.unit[:2]),
             home.unit, home.resident)]


SLICE = KindSlice(
    kind=contract.KIND, short_label="一键通", id_prefix="EA",
    rules="devices.kinds.elderly_alarm.rules", simulator="devices.kinds.elderly_alarm.simulator:ElderlyAlarmSim",
    placement=Placement(household=_every_household),
    conditions_zh={"emergency_press": "一键通紧急呼叫", "no_activity": "长时间无活动"},
)
