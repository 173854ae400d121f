"""Smart water meter (智能水表): one in every household of an elderly person living alone (a welfare signal).

The whole kind is in this folder: ``contract.py`` its messages (MQTT payloads), ``rules.py`` its
alert rules, ``simulator.py`` its simulated device; here its words and where a street has it.
"""

from __future__ import annotations

from devices.hierarchy import Household
from devices.kind_slice import KindSlice, Placement, Row, building_code
from devices.kinds.water_meter import contract


def _every_household(home: Household) -> list[Row]:
    return [(f"WM-{building_code(home.building_id)}-{home.unit}", "water_meter", home.building_id, int(home.unit[:2]),
             home.unit, home.resident)]


SLICE = KindSlice(
    kind=contract.KIND, short_label="水表", id_prefix="WM",
    rules="devices.kinds.water_meter.rules", simulator="devices.kinds.water_meter.simulator:WaterMeterSim",
    placement=Placement(household=_every_household),
    conditions_zh={"low_water_use": "用水异常偏少"},
)
