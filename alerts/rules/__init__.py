"""Alert rules, one module per device kind (``base.py`` says what a rule is).

Each module lists its rule classes in ``RULES``; adding a module is one line here.
"""

from __future__ import annotations

from alerts.rules import charging_station, elderly_alarm, smoke_detector
from alerts.rules.base import Rule

RULE_MODULES = (smoke_detector, charging_station, elderly_alarm)


def default_rules() -> list[Rule]:
    """A fresh instance of every rule (rules hold state: one set per engine)."""
    return [rule() for module in RULE_MODULES for rule in module.RULES]
