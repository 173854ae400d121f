"""Quiet readings (alerts/rules/hearing.py): leaving out what cannot change a rule changes nothing.

For every kind, random sequences of its messages (every message type, the broker's online and
offline too, values anywhere in the contract's ranges, thresholds overridden per device and per
building) go through the engine's way (``hear``: quiet readings left out, dead-man timers noted
per batch) and through the plain way (every rule of the kind that acts on the message type, on
every reading, in order). The signals must be the same, in the same order (the engine folds
them into incidents in that order, so the incidents are the same), the station steps taken in
the same order, every tick's signals the same, and every rule's state (its checkpoint) the same.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgspec.inspect as mi
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from alerts.rules import default_rules
from alerts.rules.base import Place, Rule
from alerts.rules.hearing import hear
from alerts.service import AlertService
from devices.catalog import KINDS
from devices.kinds.fire_station import contract as fs
from devices.messages import Offline, Online
from devices.reading import Reading
from tests.support.rules import RuleWorld

T0 = 1_800_000_000_000
DEVICES = ("D-1", "D-2", "D-3")
DISPATCHES = ("INC-1-D-1", "INC-2-D-2", "INC-3-D-9")  # D-9: a dispatch to a station that is not one of these


def _places(kind: str) -> list[Place]:
    return [Place("D-1", kind, "B-1", 3, "3-301", "C-1", "wanli"), Place("D-2", kind, "B-1", 4, "4-401", "C-1", "wanli"),
            Place("D-3", kind, "B-2", -1, "", "C-1", "wanli")]


def _bounded(t: Any, default_span: float) -> tuple[float, float]:
    lo = t.ge if t.ge is not None else (t.gt if t.gt is not None else 0)
    hi = t.le if t.le is not None else (t.lt if t.lt is not None else lo + default_span)
    return lo, min(hi, lo + default_span)


def _near_thresholds() -> list[float]:
    """Every rule threshold's default times the override factors below and a little either side, in hours too:
    where a reading meets a threshold is where a wrong quiet test would show."""
    values = {v for rule in default_rules() for named in rule.THRESHOLDS.values() for v in named.values()}
    scaled = {v * f for v in values for f in (*_FACTORS, 0.7, 1.2)}
    return sorted({x for v in scaled for x in (v, v * 3600, v - 0.5, v + 0.5, v * 3600 + 1)})


_FACTORS = (0.5, 0.9, 1.0, 1.5, 3.0)  # a threshold overridden per device or building: its default times one of these


def strategy_of(t: Any, name: str = "") -> st.SearchStrategy[Any]:
    """Values anywhere in a contract field's range (msgspec's own description of the type), and often right at or
    beside a threshold (``_near_thresholds``)."""
    if name == "ts":
        return st.integers(T0 - 600_000, T0 + 3_600_000)
    if name == "v":
        return st.just(1)
    if name == "dispatch_id":
        return st.sampled_from(DISPATCHES)
    match t:
        case mi.IntType():
            lo, hi = _bounded(t, 200_000)
            lo, hi = int(lo) + (t.gt is not None), int(hi) - (t.lt is not None)
            near = sorted({int(v) for v in _NEAR if lo <= int(v) <= hi})
            return st.one_of(st.integers(lo, hi), st.sampled_from(near)) if near else st.integers(lo, hi)
        case mi.FloatType():
            lo, hi = _bounded(t, 2_000.0)
            near = [v for v in _NEAR if lo <= v <= hi and (t.gt is None or v > lo) and (t.lt is None or v < hi)]
            anywhere = st.floats(lo, hi, exclude_min=t.gt is not None, exclude_max=t.lt is not None)
            return st.one_of(anywhere, st.sampled_from(near)) if near else anywhere
        case mi.BoolType():
            return st.booleans()
        case mi.NoneType():
            return st.none()
        case mi.StrType():
            return st.text("ab", min_size=t.min_length or 0, max_size=min(4, t.max_length or 4))
        case mi.LiteralType():
            return st.sampled_from(t.values)
        case mi.UnionType():
            return st.one_of(*(strategy_of(u, name) for u in t.types))
        case mi.ListType():
            return st.lists(strategy_of(t.item_type), min_size=t.min_length or 0, max_size=min(12, t.max_length or 12))
        case mi.StructType():
            return st.builds(t.cls, **{f.name: strategy_of(f.type, f.name) for f in t.fields})
        case mi.DateType():
            return st.dates()
    raise AssertionError(f"no strategy for {t}")


_NEAR = _near_thresholds()


def message_of(kind: str) -> st.SearchStrategy[Any]:
    types = (*KINDS[kind].messages, Online, Offline)
    return st.one_of(*(strategy_of(mi.type_info(cls)) for cls in types))


def _thresholds(kind: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for rule in default_rules():
        values.update(rule.THRESHOLDS.get(kind, {}))
    return values


def overrides_of(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Overrides of the kind's thresholds per device (each device all of them by one factor, so the spans are wide)
    and per building (a few of them), around their defaults."""
    defaults = _thresholds(kind)
    if not defaults:
        return st.just({})
    scaled = st.sampled_from(_FACTORS).map(lambda f: {name: v * f for name, v in defaults.items()})
    value = st.sampled_from(sorted(defaults)).flatmap(
        lambda name: st.tuples(st.just(name), st.sampled_from(_FACTORS).map(lambda f: defaults[name] * f)))
    named = st.lists(value, max_size=3).map(dict)
    return st.fixed_dictionaries({"devices": st.dictionaries(st.sampled_from(DEVICES), scaled, max_size=3),
                                  "buildings": st.dictionaries(st.sampled_from(["B-1", "B-2"]),
                                                               named.map(lambda v: {kind: v}), max_size=1)})


class _Routing:
    """The engine's routing (``AlertService.rules_for_message``) over one set of rules."""

    def __init__(self, rules: list[Rule], ctx: RuleWorld) -> None:
        class NoStore:
            def active(self) -> list[Any]:
                return []

            def rule_states(self) -> dict[str, Any]:
                return {}

        self.service = AlertService(NoStore(), lambda d, s: None, ctx, None, rules)  # type: ignore[arg-type]


def _plain(readings: list[Reading], svc: AlertService, now_ms: int, steps: list[Reading]) -> list[Any]:
    """What the engine did before quiet readings: every rule that acts on the message type, on every reading."""
    signals = []
    for reading in readings:
        if isinstance(reading.message, fs.DispatchStep):
            steps.append(reading)
        for rule in svc.rules_for_message(reading.kind, type(reading.message)):
            said = rule.on_reading(reading, svc.ctx, now_ms)
            if reading.flags:
                said = [replace(s, flags=(*s.flags, *reading.flags)) for s in said]
            signals += said
    return signals


def _state(rules: list[Rule]) -> list[Any]:
    return [(rule.name, rule.snapshot(), rule.urgent_snapshot(), rule.changed) for rule in rules]


def _run(kind: str, overrides: dict[str, Any], batches: list[list[tuple[str, Any, tuple[str, ...]]]],
         gaps_s: list[int]) -> None:
    ctx_plain = RuleWorld([type(r) for r in default_rules()], _places(kind), overrides)
    ctx_quiet = RuleWorld([type(r) for r in default_rules()], _places(kind), overrides)
    plain = _Routing([r for r in default_rules() if kind in r.kinds], ctx_plain).service
    quiet = _Routing([r for r in default_rules() if kind in r.kinds], ctx_quiet).service
    now = T0
    for svc in (plain, quiet):
        assert [s for r in svc.rules for s in r.on_tick(svc.ctx, now)] == []
        for rule in svc.rules:
            expect = getattr(rule, "expect_dispatch", None)
            if expect is not None:
                for dispatch in DISPATCHES:
                    expect(dispatch, dispatch.split("-", 2)[2], dispatch.rsplit("-", 2)[0], now)
    for batch, gap_s in zip(batches, gaps_s, strict=False):
        now += gap_s * 1000
        readings = [Reading("wanli", kind, device, message.CLASS, message, now, flags) for device, message, flags in batch]
        steps_plain: list[Reading] = []
        steps_quiet: list[Reading] = []
        said_plain = _plain(readings, plain, now, steps_plain)
        said_quiet = hear(readings, quiet.rules_for_message, quiet.ctx, now, before=(fs.DispatchStep, steps_quiet.append))
        assert said_quiet == said_plain
        assert steps_quiet == steps_plain
        assert _state(quiet.rules) == _state(plain.rules)
        tick_plain = [s for r in plain.rules for s in r.on_tick(plain.ctx, now)]
        tick_quiet = [s for r in quiet.rules for s in r.on_tick(quiet.ctx, now)]
        assert tick_quiet == tick_plain
        assert _state(quiet.rules) == _state(plain.rules)


_FLAGS = st.sampled_from([(), (), ("clock_skew",)])


@pytest.mark.parametrize("kind", sorted(KINDS))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_leaving_out_quiet_readings_changes_no_signal_and_no_state(kind: str, data: st.DataObject) -> None:
    reading = st.tuples(st.sampled_from(DEVICES), message_of(kind), _FLAGS)
    batches = data.draw(st.lists(st.lists(reading, max_size=10), min_size=1, max_size=5), label="batches")
    gaps_s = data.draw(st.lists(st.sampled_from([0, 1, 30, 600, 4 * 3600, 30 * 3600]), min_size=len(batches),
                                max_size=len(batches)), label="gaps")
    _run(kind, data.draw(overrides_of(kind), label="overrides"), batches, gaps_s)


def test_a_thresholds_span_covers_the_default_the_policy_and_every_override() -> None:
    from alerts.thresholds import Thresholds

    rules = default_rules()
    thresholds = Thresholds(rules, lambda d: "", {"buildings": {"B-1": {"smoke_detector": {"low_battery_pct": 35}}},
                                                  "devices": {"D-9": {"low_battery_pct": 5}}})
    assert thresholds.span("smoke_detector", "low_battery_pct") == (5.0, 35.0)
    assert thresholds.span("elderly_alarm", "low_battery_pct") == (5.0, 20.0)  # a device's override names no kind
    thresholds.set_policy_values({"elderly_alarm": {"low_battery_pct": 40}})
    assert thresholds.span("elderly_alarm", "low_battery_pct") == (5.0, 40.0)
    assert thresholds.span("charging_station", "port_temp_c") == (60.0, 60.0)
