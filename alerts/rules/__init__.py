"""Alert rules, one module per device kind (``base.py`` says what a rule is).

Each kind's slice names its rules module (``KindSlice.rules``, devices/kind_slice.py), which lists
its rule classes in ``RULES``; the registry is derived from the registered kinds. Loaded on first
use, so a kind's rules module may import ``alerts.rules.base`` without a circle.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from types import ModuleType
from typing import Any

from alerts.rules.base import Rule
from devices.kinds import SLICES


@cache
def rule_modules() -> tuple[ModuleType, ...]:
    """Every registered kind's rules module, in registration order."""
    return tuple(import_module(s.rules) for s in SLICES.values())


def default_rules() -> list[Rule]:
    """A fresh instance of every rule (rules hold state: one set per engine)."""
    return [rule() for module in rule_modules() for rule in module.RULES]


def __getattr__(name: str) -> Any:
    if name == "RULE_MODULES":
        return rule_modules()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
