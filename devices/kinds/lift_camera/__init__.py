"""Lift e-bike camera (电梯阻车): the whole kind in this folder.

``contract.py`` its messages (MQTT payloads), ``rules.py`` its alert rules, ``simulator.py`` its
simulated device; here: its words, and where a street has one (lift A of every high-rise).
"""

from __future__ import annotations

from devices.hierarchy import Building
from devices.kind_slice import KindSlice, Placement, Row, building_code
from devices.kinds.lift_camera import contract


def _every_high_rise(building: Building, _index: int) -> list[Row]:
    if not building.high_rise:
        return []
    return [(f"LC-{building_code(building.id)}-A", "lift_camera", building.id, 1, "", f"{building.name} A梯")]


SLICE = KindSlice(
    kind=contract.KIND, short_label="电梯摄像头", id_prefix="LC",
    rules="devices.kinds.lift_camera.rules", simulator="devices.kinds.lift_camera.simulator:LiftCameraSim",
    placement=Placement(building=_every_high_rise),
)
