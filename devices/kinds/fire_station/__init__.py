"""Micro fire station (微型消防站): one per community, registered at the community's first building.

The whole kind is in this folder: ``contract.py`` its messages (MQTT payloads), ``rules.py`` its
alert rules, ``simulator.py`` its simulated device; here its words and where a street has it.
"""

from __future__ import annotations

from devices.hierarchy import FireStation
from devices.kind_slice import KindSlice, Placement, Row
from devices.kinds.fire_station import contract


def _the_station(station: FireStation, home_building_id: str) -> list[Row]:
    return [(station.id, "fire_station", home_building_id, None, "", station.name)]


SLICE = KindSlice(
    kind=contract.KIND, short_label="微型消防站", id_prefix="MFS",
    rules="devices.kinds.fire_station.rules", simulator="devices.kinds.fire_station.simulator:FireStationSim",
    placement=Placement(station=_the_station),
    conditions_zh={"dispatch_ack_late": "微型消防站确认出动超时", "dispatch_arrival_late": "微型消防站到场超时"},
)
