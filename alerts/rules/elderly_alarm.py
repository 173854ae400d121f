"""Rules for one-touch alarms of elderly people living alone."""

from __future__ import annotations

from collections.abc import Iterator

from alerts.incidents import Severity, Signal
from devices import elderly_alarm as ea
from devices.reading import Reading


def emergency_press(reading: Reading) -> Iterator[Signal]:
    """A press needs a human call-back within about a minute: critical at once."""
    if isinstance(reading.message, ea.Press):
        yield Signal(reading.device_id, reading.kind, "emergency_press", "welfare", Severity.CRITICAL, "一键通紧急呼叫",
                     reading.ts_ms, f"老人按下一键通 {reading.device_id}，请立即回拨并上门")


RULES = (emergency_press,)
