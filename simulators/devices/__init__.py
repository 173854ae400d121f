"""Simulated devices, one per kind, publishing only through the MQTT contract.

``SIMULATORS`` maps each kind on the wire to its simulator class, derived from the registered
kinds (``KindSlice.simulator``, devices/kind_slice.py). Loaded on first use, so a kind's simulator
module may import ``simulators.devices.base`` without a circle.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import Any

from devices.kinds import SLICES
from simulators.devices.base import SimulatedDevice


@cache
def simulators() -> dict[str, type[SimulatedDevice]]:
    """Each registered kind's simulator class, in registration order."""
    found: dict[str, type[SimulatedDevice]] = {}
    for name, s in SLICES.items():
        module, _, cls = s.simulator.partition(":")
        found[name] = getattr(import_module(module), cls)
    return found


def __getattr__(name: str) -> Any:
    if name == "SIMULATORS":
        return simulators()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
