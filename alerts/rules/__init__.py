"""Alert rules, one module per device kind. A rule is pure: ``(reading) -> signals``.

Rules that need memory across messages (windows, dead-man timers, flapping) are small
state machines with the clock passed in; they live beside the stateless ones in the
kind's module and are registered the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from alerts.incidents import Signal
from alerts.rules import charging_station, elderly_alarm, smoke_detector
from devices.reading import Reading

Rule = Callable[[Reading], Iterable[Signal]]

DEFAULT_RULES: Mapping[str, Sequence[Rule]] = {
    "smoke_detector": smoke_detector.RULES,
    "charging_station": charging_station.RULES,
    "elderly_alarm": elderly_alarm.RULES,
}


def evaluate(readings: Iterable[Reading], rules: Mapping[str, Sequence[Rule]] = DEFAULT_RULES) -> list[Signal]:
    """Every signal the readings raise, in reading order."""
    out: list[Signal] = []
    for reading in readings:
        for rule in rules.get(reading.kind, ()):
            out.extend(rule(reading))
    return out
