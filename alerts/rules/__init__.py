"""Alert rules, one module per device kind (``base.py`` says what a rule is).

Each module lists its rule classes in ``RULES``; adding a module is one line here.
"""

from __future__ import annotations

from alerts.rules import (
    charging_station,
    elderly_alarm,
    fire_station,
    inspection_report,
    lift_camera,
    smoke_detector,
    water_meter,
)
from alerts.rules.base import Rule

RULE_MODULES = (smoke_detector, charging_station, elderly_alarm, fire_station, water_meter, lift_camera,
                inspection_report)


def default_rules() -> list[Rule]:
    """A fresh instance of every rule (rules hold state: one set per engine)."""
    return [rule() for module in RULE_MODULES for rule in module.RULES]
