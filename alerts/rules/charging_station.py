"""Rules for e-bike charging stations."""

from __future__ import annotations

from alerts.incidents import Severity, Signal
from alerts.rules.base import Rule, RuleContext
from devices import charging_station as cs
from devices.reading import Reading


class ShedSmoke(Rule):
    """Smoke in a charging shed is treated as a lithium-battery fire until verified."""

    kinds = frozenset({"charging_station"})

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        if not isinstance(reading.message, cs.SmokeDetected):
            return []
        return [Signal(reading.device_id, reading.kind, "shed_smoke", "fire", Severity.CRITICAL, "充电棚烟雾报警",
                       reading.ts_ms, f"充电站 {reading.device_id} 烟雾传感器报警")]


RULES: tuple[type[Rule], ...] = (ShedSmoke,)
