"""Inspection reports (随手拍): people, not sensors; reporters are registered as they join, not placed."""

from __future__ import annotations

from devices import inspection_report as contract
from devices.kind_slice import KindSlice

SLICE = KindSlice(
    kind=contract.KIND, short_label="巡查上报", id_prefix="IR",
    rules="alerts.rules.inspection_report", simulator="simulators.devices.inspection_report:InspectionReporterSim",
)
