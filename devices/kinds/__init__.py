"""The registered device kinds: one folder each (``devices/kinds/<kind>/``), one line each below.

Adding a kind: copy a folder (``lift_camera`` is a small one), change what it says, and add its
name to ``REGISTERED``. Everything else (catalog, rules, simulators, placement, labels, load
mixes, the bench's topic families) is derived from the slices (``devices/kind_slice.py``).
The order is the catalog's order: the API lists kinds in it and placement walks it.
"""

from __future__ import annotations

from importlib import import_module

from devices.kind_slice import KindSlice

REGISTERED: tuple[str, ...] = (
    "smoke_detector",
    "charging_station",
    "fire_station",
    "elderly_alarm",
    "inspection_report",
    "water_meter",
    "lift_camera",
    "gas_detector",
)

SLICES: dict[str, KindSlice] = {name: import_module(f"devices.kinds.{name}").SLICE for name in REGISTERED}
