"""The scenario library: one module per scenario, each defining ``SCENARIO`` (see simulators/scenario.py).

``scenarios()`` finds them all by name; ``get(name)`` one of them (``ScenarioError`` if
there is no such scenario, naming those there are).
"""

from __future__ import annotations

import importlib
import pkgutil

from simulators.scenario import Scenario, ScenarioError


def scenarios() -> dict[str, Scenario]:
    found: dict[str, Scenario] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        scenario = getattr(importlib.import_module(f"{__name__}.{info.name}"), "SCENARIO", None)
        if isinstance(scenario, Scenario):
            found[scenario.name] = scenario
    return found


def get(name: str) -> Scenario:
    known = scenarios()
    try:
        return known[name]
    except KeyError:
        raise ScenarioError(f"no scenario {name!r}; there are: {', '.join(known)}") from None
