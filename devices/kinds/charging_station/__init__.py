"""E-bike charging station (电动自行车集中充电设施): a shed at every third building of a community.

The whole kind is in this folder: ``contract.py`` its messages (MQTT payloads), ``rules.py`` its
alert rules, ``simulator.py`` its simulated device; here its words and where a street has it.
"""

from __future__ import annotations

from devices.hierarchy import Building
from devices.kind_slice import KindSlice, Placement, Row, building_code
from devices.kinds.charging_station import contract


def _every_third_building(building: Building, index: int) -> list[Row]:
    if index % 3:
        return []
    return [(f"CS-{building_code(building.id)}-01", "charging_station", building.id, None, "", f"{building.name} 充电棚")]


SLICE = KindSlice(
    kind=contract.KIND, short_label="充电桩", id_prefix="CS",
    rules="devices.kinds.charging_station.rules", simulator="devices.kinds.charging_station.simulator:ChargingStationSim",
    placement=Placement(building=_every_third_building),
    conditions_zh={"charging_full": "充满后仍供电", "port_overheat": "充电口过热", "thermal_runaway": "疑似电池热失控",
                   "shed_smoke": "充电棚烟雾", "overcurrent": "充电过流"},
)
