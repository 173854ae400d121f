"""Smart water meter (智能水表): one in every household of an elderly person living alone (a welfare signal)."""

from __future__ import annotations

from devices import water_meter as contract
from devices.hierarchy import Household
from devices.kind_slice import KindSlice, Placement, Row, building_code


def _every_household(home: Household) -> list[Row]:
    return [(f"WM-{building_code(home.building_id)}-{home.unit}", "water_meter", home.building_id, int(home.unit[:2]),
             home.unit, home.resident)]


SLICE = KindSlice(
    kind=contract.KIND, short_label="水表", id_prefix="WM",
    rules="alerts.rules.water_meter", simulator="simulators.devices.water_meter:WaterMeterSim",
    placement=Placement(household=_every_household),
    conditions_zh={"low_water_use": "用水异常偏少"},
)
