"""A smart water meter (智能水表) in the home of an elderly person living alone.

Every hour a ``reading`` (cumulative litres, litres since the last reading): a morning and
an evening peak of use, a little through the day, nothing at night (Shanghai time); at
local midnight the day's ``daily_usage``. ``stop_use`` (nobody draws water: the resident
is unwell or away) and ``leak`` (a tap left running) on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from devices.topics import MessageClass
from simulators.clock import local_hour, next_local_time_ms, shanghai
from simulators.devices.base import LoadStream, Publication, SimulatedDevice


def _litres_per_hour(hour: float) -> float:
    if 6.5 <= hour < 9:
        return 18.0
    if 17.5 <= hour < 21:
        return 14.0
    if 9 <= hour < 22:
        return 4.0
    return 0.0


@dataclass
class WaterMeterSim(SimulatedDevice):
    kind: str = "water_meter"
    LOAD_STREAMS: ClassVar[dict[str, LoadStream]] = {
        "water_reading": LoadStream(lambda d, t: d.periodic(t)[-1], street_weight=0.03),
    }
    total_l: float = 0.0
    battery_pct: float = 90.0
    in_use: bool = True
    leaking_l_per_min: float = 0.0
    _last_ms: int | None = field(default=None, init=False, repr=False)
    _today_l: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.total_l:
            self.total_l = round(self.rng.uniform(20_000, 90_000), 1)

    def on_start(self, now_ms: int) -> None:
        self._last_ms = now_ms
        self.schedule(next_local_time_ms(now_ms + 1, 0, 0), self._midnight)

    def _midnight(self, at_ms: int) -> list[Publication]:
        self.schedule(next_local_time_ms(at_ms + 1, 0, 0), self._midnight)
        day = shanghai(at_ms - 1).date().isoformat()
        litres, self._today_l = self._today_l, 0.0
        return [self.publication(MessageClass.TELEMETRY, "daily_usage", at_ms, date=day, litres=round(litres, 1))]

    def periodic(self, at_ms: int) -> list[Publication]:
        last = self._last_ms if self._last_ms is not None else at_ms
        seconds = max(0, (at_ms - last) // 1000)
        self._last_ms = at_ms
        mid = last + (at_ms - last) // 2
        used = _litres_per_hour(local_hour(mid)) * seconds / 3600 * self.rng.uniform(0.6, 1.4) if self.in_use else 0.0
        used += self.leaking_l_per_min * seconds / 60
        self.total_l += used
        self._today_l += used
        self.battery_pct = max(0.0, self.battery_pct - 0.0005)
        return [self.publication(MessageClass.TELEMETRY, "reading", at_ms, total_l=round(self.total_l, 1),
                                 interval_l=round(used, 1), interval_s=seconds, battery_pct=round(self.battery_pct, 1))]

    def stop_use(self) -> None:
        self.in_use = False

    def leak(self, now_ms: int, flow_l_per_min: float = 6.0, duration_s: int = 3600) -> Publication:
        self.leaking_l_per_min = flow_l_per_min
        return self.publication(MessageClass.EVENT, "leak", now_ms, flow_l_per_min=flow_l_per_min, duration_s=duration_s)
