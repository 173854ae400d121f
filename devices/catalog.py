"""Every device kind the system understands, by its name on the wire.

Adding a kind is one new module in ``devices/`` defining ``KIND`` and one line here.
"""

from __future__ import annotations

from devices import (
    charging_station,
    elderly_alarm,
    fire_station,
    inspection_report,
    lift_camera,
    smoke_detector,
    water_meter,
)
from devices.messages import DeviceKind

KINDS: dict[str, DeviceKind] = {
    k.name: k
    for k in (
        smoke_detector.KIND,
        charging_station.KIND,
        fire_station.KIND,
        elderly_alarm.KIND,
        inspection_report.KIND,
        water_meter.KIND,
        lift_camera.KIND,
    )
}
