"""Rules for e-bike charging stations."""

from __future__ import annotations

from collections.abc import Iterator

from alerts.incidents import Severity, Signal
from devices import charging_station as cs
from devices.reading import Reading


def shed_smoke(reading: Reading) -> Iterator[Signal]:
    """Smoke in a charging shed is treated as a lithium-battery fire until verified."""
    msg = reading.message
    if isinstance(msg, cs.SmokeDetected):
        yield Signal(reading.device_id, reading.kind, "shed_smoke", "fire", Severity.CRITICAL, "充电棚烟雾报警",
                     reading.ts_ms, f"充电站 {reading.device_id} 烟雾传感器报警")


RULES = (shed_smoke,)
