"""Rules for smoke detectors."""

from __future__ import annotations

from alerts.incidents import Severity, Signal
from alerts.rules.base import Rule, RuleContext
from devices import smoke_detector as sd
from devices.reading import Reading


class SmokeAlarm(Rule):
    """A detector sounding is a possible fire until a person says otherwise."""

    kinds = frozenset({"smoke_detector"})

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        msg = reading.message
        if not isinstance(msg, sd.Alarm):
            return []
        density = f"，烟雾浓度 {msg.smoke_density:g} dB/m" if msg.smoke_density is not None else ""
        return [Signal(reading.device_id, reading.kind, "smoke_alarm", "fire", Severity.HIGH, "烟感报警",
                       reading.ts_ms, f"探测器 {reading.device_id} 报警{density}")]


RULES: tuple[type[Rule], ...] = (SmokeAlarm,)
