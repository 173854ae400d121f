"""Rules for one-touch alarms of elderly people living alone."""

from __future__ import annotations

from alerts.incidents import Severity, Signal
from alerts.rules.base import Rule, RuleContext
from devices import elderly_alarm as ea
from devices.reading import Reading


class EmergencyPress(Rule):
    """A press needs a human call-back within about a minute: critical at once."""

    kinds = frozenset({"elderly_alarm"})

    def on_reading(self, reading: Reading, ctx: RuleContext, now_ms: int) -> list[Signal]:
        if not isinstance(reading.message, ea.Press):
            return []
        return [Signal(reading.device_id, reading.kind, "emergency_press", "welfare", Severity.CRITICAL, "一键通紧急呼叫",
                       reading.ts_ms, f"老人按下一键通 {reading.device_id}，请立即回拨并上门")]


RULES: tuple[type[Rule], ...] = (EmergencyPress,)
