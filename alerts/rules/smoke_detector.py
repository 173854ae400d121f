"""Rules for smoke detectors."""

from __future__ import annotations

from collections.abc import Iterator

from alerts.incidents import Severity, Signal
from devices import smoke_detector as sd
from devices.reading import Reading


def smoke_alarm(reading: Reading) -> Iterator[Signal]:
    """A detector sounding is a possible fire until a person says otherwise."""
    msg = reading.message
    if isinstance(msg, sd.Alarm):
        density = f"，烟雾浓度 {msg.smoke_density:g} dB/m" if msg.smoke_density is not None else ""
        yield Signal(reading.device_id, reading.kind, "smoke_alarm", "fire", Severity.HIGH, "烟感报警",
                     reading.ts_ms, f"探测器 {reading.device_id} 报警{density}")


RULES = (smoke_alarm,)
