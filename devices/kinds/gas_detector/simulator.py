"""A combustible-gas detector in a kitchen: a heartbeat every half hour, and now and then a leak.

- heartbeat: the background %LEL (a kitchen with a gas hob reads 0–2 % LEL), the valve's
  position, signal strength;
- ``leak``: a hose slipped off or a burner blew out: the gas climbs towards a peak, the
  detector alarms at its low set point (25 % LEL) and, if the peak reaches it, at its high
  one (50 % LEL), shuts the valve a few seconds after its first alarm (or fails to, when
  ``valve_works`` is off) and reports the valve's feedback; once the kitchen is aired the gas
  falls and the detector sends ``gas_cleared``;
- ``fault`` on demand (a sensor past its service life).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from devices.topics import MessageClass
from simulators.devices.base import LoadStream, Publication, SimulatedDevice

LOW_SET_POINT = 25.0  # % LEL: GB 15322.2's ceiling for a household detector's alarm
HIGH_SET_POINT = 50.0


@dataclass
class GasDetectorSim(SimulatedDevice):
    kind: str = "gas_detector"
    LOAD_STREAMS: ClassVar[dict[str, LoadStream]] = {
        "gas_heartbeat": LoadStream(lambda d, t: d.heartbeat(t)),  # not in the measured mixes: the street has none yet
    }
    valve_fitted: bool = True
    valve: str = field(default="open", init=False)  # what its feedback contact last said
    lel_pct: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.valve_fitted:
            self.valve = "none"

    def periodic(self, at_ms: int) -> list[Publication]:
        return [self.heartbeat(at_ms)]

    def heartbeat(self, now_ms: int) -> Publication:
        lel = self.lel_pct if self.lel_pct >= 2 else round(self.rng.uniform(0, 2), 1)
        return self.publication(MessageClass.TELEMETRY, "heartbeat", now_ms, lel_pct=lel, valve=self.valve,
                                rssi_dbm=round(self.rng.uniform(-100, -70)))

    def gas_alarm(self, now_ms: int, level: str, lel_pct: float) -> Publication:
        return self.publication(MessageClass.EVENT, "gas_alarm", now_ms, level=level, lel_pct=lel_pct)

    def gas_cleared(self, now_ms: int) -> Publication:
        return self.publication(MessageClass.EVENT, "gas_cleared", now_ms, lel_pct=round(self.lel_pct, 1))

    def valve_feedback(self, now_ms: int, state: str, cause: str = "alarm") -> Publication:
        if state != "failed":
            self.valve = state
        return self.publication(MessageClass.EVENT, "valve", now_ms, state=state, cause=cause)

    def fault(self, now_ms: int, code: str = "E21", detail: str = "sensor past its service life") -> Publication:
        return self.publication(MessageClass.EVENT, "fault", now_ms, code=code, detail=detail)

    # -- episodes -----------------------------------------------------------------------------------------------------

    def leak(self, start_ms: int, peak_lel_pct: float = 60.0, rise_s: float = 120.0, aired_after_s: float = 600.0,
             valve_works: bool = True) -> None:
        """Gas climbing for ``rise_s`` to ``peak_lel_pct``, alarms at the set points it crosses, the valve, then air."""
        crossings = [(lvl, point) for lvl, point in (("low", LOW_SET_POINT), ("high", HIGH_SET_POINT))
                     if peak_lel_pct >= point]

        def alarm_at(level: str, point: float) -> None:
            at = start_ms + int(rise_s * 1000 * point / peak_lel_pct)
            reading = round(point + self.rng.uniform(0, 2), 1)

            def sound(t: int) -> list[Publication]:
                self.lel_pct = reading
                return [self.gas_alarm(t, level, reading)]

            self.schedule(at, sound)

        for level, point in crossings:
            alarm_at(level, point)
        if crossings and self.valve != "none":
            first = start_ms + int(rise_s * 1000 * LOW_SET_POINT / peak_lel_pct)
            self.schedule(first + self.rng.randint(2_000, 6_000),
                          lambda t: [self.valve_feedback(t, "closed" if valve_works else "failed")])

        def peak(t: int) -> list[Publication]:
            self.lel_pct = peak_lel_pct
            return []

        def aired(t: int) -> list[Publication]:
            self.lel_pct = round(self.rng.uniform(3, 8), 1)
            return [self.gas_cleared(t)] if crossings else []

        self.schedule(start_ms + int(rise_s * 1000), peak)
        self.schedule(start_ms + int(aired_after_s * 1000), aired)
