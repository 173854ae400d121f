"""Thresholds of the alert rules: defaults per kind, overridden per building and per device.

The defaults live with the rules (each rule class's ``THRESHOLDS``); overrides come from a
JSON file (``WANLI_THRESHOLDS_FILE``):

    {"buildings": {"xq-01": {"charging_station": {"port_temp_c": 55}}},
     "devices": {"CS-XQ01-01": {"port_temp_c": 50}}}

A device's own value wins over its building's, which wins over the kind's value in the escalation
policy document in force (``alerts/policies.py``, editable on the policies page), which wins over
the rule's default.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from alerts.rules.base import Rule
from foundation.errors import Invalid


class Thresholds:
    def __init__(self, rules: Iterable[Rule], building_of: Callable[[str], str],
                 overrides: Mapping[str, object] | None = None) -> None:
        self._defaults: dict[str, dict[str, float]] = {}
        for rule in rules:
            for kind, values in rule.THRESHOLDS.items():
                self._defaults.setdefault(kind, {}).update(values)
        self._building_of = building_of
        raw = dict(overrides or {})
        self._buildings: dict[str, dict[str, dict[str, float]]] = raw.get("buildings", {})  # type: ignore[assignment]
        self._devices: dict[str, dict[str, float]] = raw.get("devices", {})  # type: ignore[assignment]
        self._policy: dict[str, dict[str, float]] = {}  # the policy document's values per kind (alerts/policies.py)
        self._spans: dict[tuple[str, str], tuple[float, float]] = {}
        self._check()

    def set_policy_values(self, values: Mapping[str, Mapping[str, float]]) -> None:
        """The kinds' values of the policy version in force: between the rules' defaults and the file's overrides."""
        for kind, named in values.items():
            unknown = set(named) - set(self._defaults.get(kind, {}))
            if unknown:
                raise Invalid(f"thresholds for {kind}: no rule has a threshold {sorted(unknown)}")
        self._policy = {k: dict(v) for k, v in values.items()}
        self._spans = {}

    def _check(self) -> None:
        known = {name for values in self._defaults.values() for name in values}
        for building, kinds in self._buildings.items():
            for kind, values in kinds.items():
                unknown = set(values) - set(self._defaults.get(kind, {}))
                if unknown:
                    raise Invalid(f"thresholds for building {building}: {kind} has no threshold {sorted(unknown)}")
        for device, values in self._devices.items():
            unknown = set(values) - known
            if unknown:
                raise Invalid(f"thresholds for device {device}: no rule has a threshold {sorted(unknown)}")

    def get(self, kind: str, name: str, device_id: str) -> float:
        own = self._devices.get(device_id)
        if own is not None and name in own:
            return float(own[name])
        building = self._buildings.get(self._building_of(device_id), {}).get(kind)
        if building is not None and name in building:
            return float(building[name])
        policy = self._policy.get(kind)
        if policy is not None and name in policy:
            return float(policy[name])
        try:
            return self._defaults[kind][name]
        except KeyError:
            raise Invalid(f"no threshold {name!r} for {kind}") from None

    def span(self, kind: str, name: str) -> tuple[float, float]:
        """The lowest and the highest value this threshold has for any device of the kind: its default, the
        policy's, every building's and every device's override. A reading beyond both sides of a bound for every
        device is judged without asking which device it came from (``Rule.quiet``, alerts/rules/base.py)."""
        span = self._spans.get((kind, name))
        if span is None:
            if name not in self._defaults.get(kind, {}):
                raise Invalid(f"no threshold {name!r} for {kind}")
            policy = self._policy.get(kind, {})
            values = [float(policy[name]) if name in policy else self._defaults[kind][name]]
            values += [float(b[kind][name]) for b in self._buildings.values() if name in b.get(kind, {})]
            values += [float(own[name]) for own in self._devices.values() if name in own]
            span = self._spans[(kind, name)] = (min(values), max(values))
        return span

    def defaults(self) -> dict[str, dict[str, float]]:
        return {k: dict(v) for k, v in self._defaults.items()}


def load_overrides(path: Path | None) -> dict[str, object]:
    if path is None:
        return {}
    try:
        return json.loads(path.read_text("utf-8"))  # type: ignore[no-any-return]
    except (OSError, ValueError) as exc:
        raise Invalid(f"cannot read thresholds file {path}: {exc}") from exc
