"""Smoke detector (独立式感烟火灾探测报警器, GB 20517): a detector in every unit of every building.

The whole kind is in this folder: ``contract.py`` its messages (MQTT payloads), ``rules.py`` its
alert rules, ``simulator.py`` its simulated device; here its words and where a street has it.
"""

from __future__ import annotations

from devices.hierarchy import Building
from devices.kind_slice import KindSlice, Placement, Row, building_code
from devices.kinds.smoke_detector import contract


def _every_unit(building: Building, _index: int) -> list[Row]:
    code = building_code(building.id)
    return [(f"SD-{code}-{unit}", "smoke_detector", building.id, floor, unit, f"{building.name} {unit}")
            for floor in range(1, building.floors + 1)
            for unit in (f"{floor:02d}{u:02d}" for u in range(1, building.units_per_floor + 1))]


SLICE = KindSlice(
    kind=contract.KIND, short_label="烟感", id_prefix="SD",
    rules="devices.kinds.smoke_detector.rules", simulator="devices.kinds.smoke_detector.simulator:SmokeDetectorSim",
    placement=Placement(building=_every_unit),
    conditions_zh={"smoke_alarm": "烟感报警", "suspected_fire": "疑似火情", "flapping": "报警反复切换",
                   "repeated_silencing": "反复消音"},
)
