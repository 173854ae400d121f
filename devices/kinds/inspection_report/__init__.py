"""Inspection reports (随手拍): people, not sensors; reporters are registered as they join, not placed.

The whole kind is in this folder: ``contract.py`` its messages (MQTT payloads), ``rules.py`` its
alert rules, ``simulator.py`` its simulated device; here its words and where a street has it.
"""

from __future__ import annotations

from devices.kind_slice import KindSlice
from devices.kinds.inspection_report import contract

SLICE = KindSlice(
    kind=contract.KIND, short_label="巡查上报", id_prefix="IR",
    rules="devices.kinds.inspection_report.rules", simulator="devices.kinds.inspection_report.simulator:InspectionReporterSim",
)
