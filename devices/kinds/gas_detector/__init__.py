"""Combustible-gas detector (可燃气体探测器, GB 15322): the whole kind in this folder.

``contract.py`` its messages (%LEL readings, low and high alarms, the shut-off valve's feedback,
faults), ``rules.py`` its alert rules, ``simulator.py`` its simulated device, ``scenario.py`` a
kitchen leak in an old estate; here: its words. The generated street places none yet (the
street's figures and benchmarks stay those of the kinds it has): detectors are registered as
the old estates fit them, as the scenario's kitchens are.
"""

from __future__ import annotations

from devices.kind_slice import KindSlice
from devices.kinds.gas_detector import contract

SLICE = KindSlice(
    kind=contract.KIND, short_label="燃气探测器", id_prefix="GD",
    rules="devices.kinds.gas_detector.rules", simulator="devices.kinds.gas_detector.simulator:GasDetectorSim",
    scenarios=("devices.kinds.gas_detector.scenario",),
    conditions_zh={"gas_leak": "可燃气体泄漏", "valve_not_closed": "燃气切断阀未关闭"},
)
