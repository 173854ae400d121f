"""The rules' world in miniature, shared by the rule tests: registered places and the real thresholds."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from alerts.incidents import Signal
from alerts.rules.base import Place, Rule
from alerts.thresholds import Thresholds
from tests.support.readings import reading


class RuleWorld:
    """A RuleContext over a few places; ``overrides`` as in WANLI_THRESHOLDS_FILE ({"devices": …, "buildings": …})."""

    def __init__(self, rules: Iterable[type[Rule]], places: Iterable[Place] = (),
                 overrides: Mapping[str, object] | None = None) -> None:
        self.places = {p.device_id: p for p in places}
        self._thresholds = Thresholds([r() for r in rules], self._building_of, overrides)

    def _building_of(self, device_id: str) -> str:
        place = self.places.get(device_id)
        return place.building_id if place else ""

    def place(self, device_id: str) -> Place | None:
        return self.places.get(device_id)

    def devices(self, kind: str) -> list[Place]:
        return [p for p in self.places.values() if p.kind == kind]

    def threshold(self, kind: str, name: str, device_id: str) -> float:
        return self._thresholds.get(kind, name, device_id)

    def threshold_span(self, kind: str, name: str) -> tuple[float, float]:
        return self._thresholds.span(kind, name)


def rule_context(rules: Iterable[type[Rule]], places: Iterable[Place] = (),
                 overrides: Mapping[str, Mapping[str, float]] | None = None) -> RuleWorld:
    """A RuleWorld with thresholds overridden per device only: ``overrides`` is {device_id: {threshold: value}}."""
    return RuleWorld(rules, places, {"devices": overrides or {}})


def run_rule(rule: Rule, ctx: Any, kind: str, device: str, messages: Sequence[Any],
             now_ms: int | None = None) -> list[Signal]:
    """Every signal ``rule`` gives for ``messages`` from ``device``, each handed on at its own ts (or at ``now_ms``)."""
    return [signal for m in messages
            for signal in rule.on_reading(reading(kind, m, device), ctx, m.ts if now_ms is None else now_ms)]
