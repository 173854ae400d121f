"""Simulated devices, one module per kind, publishing only through the MQTT contract.

``SIMULATORS`` maps each kind on the wire to its simulator class.
"""

from __future__ import annotations

from simulators.devices.base import SimulatedDevice
from simulators.devices.charging_station import ChargingStationSim
from simulators.devices.elderly_alarm import ElderlyAlarmSim
from simulators.devices.fire_station import FireStationSim
from simulators.devices.inspection_report import InspectionReporterSim
from simulators.devices.lift_camera import LiftCameraSim
from simulators.devices.smoke_detector import SmokeDetectorSim
from simulators.devices.water_meter import WaterMeterSim

SIMULATORS: dict[str, type[SimulatedDevice]] = {
    "smoke_detector": SmokeDetectorSim,
    "charging_station": ChargingStationSim,
    "fire_station": FireStationSim,
    "elderly_alarm": ElderlyAlarmSim,
    "inspection_report": InspectionReporterSim,
    "water_meter": WaterMeterSim,
    "lift_camera": LiftCameraSim,
}
