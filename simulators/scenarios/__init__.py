"""The scenario library: one module per scenario, each defining ``SCENARIO`` (see simulators/scenario.py).

The modules here, and those a device kind keeps in its folder (``KindSlice.scenarios``,
``devices/kinds/<kind>/scenario.py``).

``scenarios()`` finds them all by name; ``get(name)`` one of them (``ScenarioError`` if
there is no such scenario, naming those there are).
"""

from __future__ import annotations

import importlib
import pkgutil

from devices.kinds import SLICES
from simulators.scenario import Scenario, ScenarioError


def scenarios() -> dict[str, Scenario]:
    modules = [f"{__name__}.{info.name}" for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name)]
    modules += [module for s in SLICES.values() for module in s.scenarios]
    found: dict[str, Scenario] = {}
    for module in modules:
        scenario = getattr(importlib.import_module(module), "SCENARIO", None)
        if isinstance(scenario, Scenario):
            found[scenario.name] = scenario
    return dict(sorted(found.items()))


def get(name: str) -> Scenario:
    known = scenarios()
    try:
        return known[name]
    except KeyError:
        raise ScenarioError(f"no scenario {name!r}; there are: {', '.join(known)}") from None
